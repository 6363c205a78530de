"""VERP addresses: the envelope sender that names one message, and the mailto: unsubscribe.

`bounces+d2bi-k1x-<signature>@<bounce domain>` names delivery (ledger row) 2bi (base 36),
signed on day k1x (days since 1970, base 36); `j…` names a journey email, `unsubscribe+u…` a
subscriber. The signature is 80 bits of HMAC-SHA256 under a key derived from the secret key,
over the kind, the id, the day and the subscriber's random `token_key` (and, for an unsubscribe,
their `token_version`), so a token never matches another row, not even one with a reused id,
and a new confirmation retires old unsubscribe addresses. Everything is lower case and at most
45 characters: some MTAs fold the case of local parts, and RFC 5321 allows 64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from newsletter.config import Settings

DELIVERY, JOURNEY, UNSUBSCRIBE = "d", "j", "u"
BOUNCE_PREFIX, UNSUBSCRIBE_PREFIX = "bounces", "unsubscribe"
_TOKEN = re.compile(r"([dju])([0-9a-z]{1,12})-([0-9a-z]{1,5})-([a-z2-7]{16})\Z")


@dataclass(frozen=True)
class VerpToken:
    """A token as written; `signed_by` checks it once the row it names is known."""

    kind: str
    ident: int
    day: int
    signature: str


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def today() -> int:
    return int(time.time()) // 86400


@lru_cache(maxsize=16)
def _key(secret: str) -> bytes:
    return hmac.digest(secret.encode(), b"newsletter.verp", "sha256")


def _sign(secret: str, kind: str, ident: int, day: int, bound: str) -> str:
    mac = hmac.digest(_key(secret), f"{kind}|{ident}|{day}|{bound}".encode(), "sha256")
    return base64.b32encode(mac[:10]).decode("ascii").lower()


def make_token(settings: Settings, kind: str, ident: int, bound: str, day: int | None = None) -> str:
    """`kind` + id + day + signature, for the row `ident` whose subscriber's key is `bound`."""
    day = today() if day is None else day
    return f"{kind}{_b36(ident)}-{_b36(day)}-{_sign(settings.secret_key, kind, ident, day, bound)}"


def bounce_address(settings: Settings, kind: str, ident: int, bound: str) -> str:
    """The envelope sender (Return-Path) of one digest (`DELIVERY`) or journey email (`JOURNEY`)."""
    return f"{BOUNCE_PREFIX}+{make_token(settings, kind, ident, bound)}@{settings.verp_domain}"


def unsubscribe_address(settings: Settings, subscriber_id: int, token_key: str, version: int) -> str:
    """The mailto: of List-Unsubscribe: mail to it unsubscribes this subscriber."""
    token = make_token(settings, UNSUBSCRIBE, subscriber_id, f"{token_key}|{version}")
    return f"{UNSUBSCRIBE_PREFIX}+{token}@{settings.verp_domain}"


def parse_address(settings: Settings, address: str) -> tuple[str, VerpToken | None] | None:
    """("bounces" or "unsubscribe", the token or None if it is not one of ours) for an address
    of the bounce domain; None for any other address (the server refuses those)."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or domain.lower() != settings.verp_domain:
        return None
    prefix, plus, token = local.lower().partition("+")
    if prefix not in (BOUNCE_PREFIX, UNSUBSCRIBE_PREFIX):
        return None
    match = _TOKEN.match(token) if plus else None
    if match is None or (prefix == UNSUBSCRIBE_PREFIX) != (match[1] == UNSUBSCRIBE):
        return prefix, None
    return prefix, VerpToken(match[1], int(match[2], 36), int(match[3], 36), match[4])


def signed_by(settings: Settings, token: VerpToken, bound: str, max_days: int) -> bool:
    """Whether `token` was signed by us (any current or fallback key, compared in constant
    time) for the row whose subscriber's key is `bound`, at most `max_days` ago."""
    if not 0 <= today() - token.day <= max_days:
        return False
    ok = False
    for secret in settings.signing_keys:
        expected = _sign(secret, token.kind, token.ident, token.day, bound)
        ok |= hmac.compare_digest(expected, token.signature)
    return ok


def digest_of(raw: bytes) -> str:
    """A short fingerprint of a message, for log events about mail we drop."""
    return hashlib.sha256(raw).hexdigest()[:16]
