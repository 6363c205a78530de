"""VERP addresses: the envelope sender that names one message, and the mailto: unsubscribe.

`bounces+d0x3k9q1-k1x-<signature>@<bounce domain>` names a delivery (ledger row): `0` marks the
row id as masked, `x3k9q1` is the id put through a keyed permutation of 32-bit numbers (a
Feistel network under a key derived from the secret key) in base 36, signed on day k1x (days
since 1970, base 36); `j…` names a journey email, `unsubscribe+u…` a subscriber. Masked, an
address does not tell its reader their subscriber number, nor the list's size and growth. A
token without the `0` (`d2bi-…`, the plain id) is one sent before; it is still read. The
signature is 80 bits of HMAC-SHA256 under a key derived from the secret key, over the kind, the
id, the day and the subscriber's random `token_key` (and, for an unsubscribe, their
`token_version`), so a token never matches another row, not even one with a reused id, and a
new confirmation retires old unsubscribe addresses. Everything is lower case and at most 45
characters: some MTAs fold the case of local parts, and RFC 5321 allows 64.
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
_TOKEN = re.compile(r"([dju])(0?)([0-9a-z]{1,12})-([0-9a-z]{1,5})-([a-z2-7]{16})\Z")
MAX_ID = 2**31 - 1  # models.MAX_ROW_ID: a larger id was a PostgreSQL error (451, "try again")


@dataclass(frozen=True)
class VerpToken:
    """A token as written; `readings` gives the row ids it may name (one per signing key when
    masked), and `signed_by` checks it once the row is known."""

    kind: str
    value: int  # the row id, masked unless written before masking (`masked` False)
    day: int
    signature: str
    masked: bool = True


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


@lru_cache(maxsize=16)
def _round_keys(secret: str) -> tuple[bytes, ...]:
    return tuple(hmac.digest(_key(secret), b"mask round %d" % step, "sha256")[:32] for step in range(4))


def _half(key: bytes, half: int) -> int:
    return int.from_bytes(hashlib.blake2s(half.to_bytes(2, "big"), digest_size=2, key=key).digest(), "big")


def mask(secret: str, ident: int, *, unmask: bool = False) -> int:
    """`ident` through (or back through) a 4-round Feistel permutation of 32-bit numbers keyed
    by `secret` (keyed BLAKE2s rounds): every id has one masked value and back, and without the
    key neither tells the other."""
    keys, left, right = _round_keys(secret), ident >> 16, ident & 0xFFFF
    for key in reversed(keys) if unmask else keys:
        left, right = (right ^ _half(key, left), left) if unmask else (right, left ^ _half(key, right))
    return (left << 16) | right


def make_token(settings: Settings, kind: str, ident: int, bound: str, day: int | None = None) -> str:
    """`kind` + 0 + masked id + day + signature, for the row `ident` whose subscriber's key is `bound`."""
    day, secret = (today() if day is None else day), settings.secret_key
    return f"{kind}0{_b36(mask(secret, ident))}-{_b36(day)}-{_sign(secret, kind, ident, day, bound)}"


def readings(settings: Settings, token: VerpToken) -> list[tuple[int, tuple[str, ...]]]:
    """(row id, the keys to check its signature with) for each id the token may name: the id
    unmasked by each signing key (a rotated key's mail still comes back), or the plain id."""
    if not token.masked:
        return [(token.value, tuple(settings.signing_keys))]
    ids = [(mask(secret, token.value, unmask=True), (secret,)) for secret in settings.signing_keys]
    return [(ident, secrets) for ident, secrets in ids if ident <= MAX_ID]


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
    value = int(match[3], 36)
    if value > (2**32 - 1 if match[2] else MAX_ID):
        return prefix, None
    return prefix, VerpToken(match[1], value, int(match[4], 36), match[5], masked=bool(match[2]))


def signed_by(token: VerpToken, ident: int, bound: str, max_days: int, secrets: tuple[str, ...]) -> bool:
    """Whether `token` was signed with one of `secrets` (compared in constant time) for row
    `ident`, whose subscriber's key is `bound`, at most `max_days` ago."""
    if not 0 <= today() - token.day <= max_days:
        return False
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(_sign(secret, token.kind, ident, token.day, bound), token.signature)
    return ok


def digest_of(raw: bytes) -> str:
    """A short fingerprint of a message, for log events about mail we drop."""
    return hashlib.sha256(raw).hexdigest()[:16]
