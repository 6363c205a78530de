"""What people type, checked: an email address (validated, normalised) and free-text interests."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_INTERESTS = 2000
MAX_EMAIL = 254


class InvalidInput(ValueError):
    """User input we refuse, with a message fit to show the user."""


def normalise_email(raw: str) -> tuple[str, str]:
    """Validate an address; return (normalised address to send to, case-folded lookup key)."""
    if not isinstance(raw, str):
        raise InvalidInput("Please enter an email address.")
    if any(ch in raw for ch in "\r\n\x00"):
        raise InvalidInput("That email address contains a line break, which is not allowed.")
    value = raw.strip()
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
    return info.normalized, info.normalized.casefold()


def clean_interests(raw: str | None) -> str:
    """Free text, trimmed, control characters removed, bounded in size."""
    text = "".join(ch for ch in (raw or "") if ch.isprintable() or ch in "\n\t").strip()
    if len(text) > MAX_INTERESTS:
        raise InvalidInput(f"Interests are limited to {MAX_INTERESTS} characters.")
    return text
