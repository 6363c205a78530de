"""What people type, checked: an email address (validated, normalised), free-text interests,
a weekday and a time zone."""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from pydantic import BeforeValidator

from newsletter.values import digits_only

MAX_INTERESTS = 2000
MAX_EMAIL = 254
MAX_TIMEZONE = 64
# What the zoneinfo folder holds besides zones: copies with other leap-second rules, the host's
# own zone, and placeholders no place uses. zoneinfo loads them, but they are not IANA names.
NOT_ZONES = ("posix/", "right/", "SystemV/")
NOT_ZONE_NAMES = frozenset({"localtime", "Factory", "posixrules", "leapseconds"})


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic reads JSON true as 1: {"max_papers": true} set 1
        raise ValueError("expected a whole number, not true or false")
    return value


# An int field of a body that comes as a form ("5") or as JSON (5), but never as true/false.
WholeNumber = Annotated[int, BeforeValidator(_not_a_bool)]


class InvalidInput(ValueError):
    """User input we refuse, with a message fit to show the user; `field` names what was wrong
    when a form has several fields ("email", "interests"), None otherwise."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def normalise_email(raw: str) -> tuple[str, str]:
    """Validate an address; return (normalised address to send to, its lookup key: `email_key`)."""
    if not isinstance(raw, str):
        raise InvalidInput("Please enter an email address.")
    if any(ch in raw for ch in "\r\n"):
        raise InvalidInput("That email address contains a line break, which is not allowed.")
    value = raw.strip()
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidInput("That email address contains a control character, which is not allowed.")
    if "\ufffd" in value:  # what a form's invalid percent-encoding (%ff) decodes to
        raise InvalidInput("That email address contains a character that did not arrive intact.")
    if not value:
        raise InvalidInput("Please enter an email address.")
    if len(value) > MAX_EMAIL:
        raise InvalidInput(f"That email address is longer than {MAX_EMAIL} characters.")
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"That email address is not valid: {exc}") from exc
    if any(ord(ch) < 32 or ch in '<>,;"' for ch in info.normalized):
        raise InvalidInput("That email address contains characters we cannot send to.")
    return info.normalized, email_key(info.normalized)


def email_key(address: str) -> str:
    """The lookup key of a normalised address: lower case (Ada@ and ada@ are one reader).
    Not `casefold()`, which also merges different letters: "straße@" with "strasse@", the
    ligature "ﬁona@" with "fiona@", so a stranger's signup took the other address's place (and
    an operator's add confirmed the lookalike). Keys stored before migration 0014 were folded."""
    return address.lower()


def clean_interests(raw: str | None) -> str:
    """Free text, trimmed, control characters removed, bounded in size."""
    text = "".join(ch for ch in (raw or "") if ch.isprintable() or ch in "\n\t").strip()
    if len(text) > MAX_INTERESTS:
        raise InvalidInput(f"Interests are limited to {MAX_INTERESTS} characters.", field="interests")
    return text


DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def clean_weekday(raw: int | str | None) -> int | None:
    """0-6 (Monday is 0), or a day's name ("mon", "Monday"); empty means the list's day (None)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    text = str(raw).strip().lower()
    if digits_only(text) and 0 <= int(text) <= 6:
        return int(text)
    for number, name in enumerate(DAY_NAMES):
        if text in (name, name[:3]):
            return number
    raise InvalidInput("The weekday must be 0-6 (0 is Monday) or a day's name such as mon or Monday.")


def clean_timezone(raw: str | None) -> str | None:
    """An IANA time zone name the zoneinfo database knows (Europe/Berlin); empty means the
    list's zone (None)."""
    text = (raw or "").strip()
    if not text:
        return None
    if len(text) > MAX_TIMEZONE or not known_zone(text):
        raise InvalidInput("Unknown time zone: use a name from the IANA database, such as Europe/Berlin.")
    return text


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA zone name (Europe/Berlin, or an older one the database still
    links, such as Asia/Calcutta) that zoneinfo can load; never `posix/…`, `localtime` or the like."""
    return name in zone_names_set() and loadable_zone(name)


def loadable_zone(name: str) -> bool:
    """Whether zoneinfo can load `name` (paths and odd bytes are refused, never opened)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@lru_cache
def zone_names_set() -> frozenset[str]:
    """Every IANA zone name of the zoneinfo database, its links included."""
    names = available_timezones()
    return frozenset(n for n in names if not n.startswith(NOT_ZONES) and n not in NOT_ZONE_NAMES)
