"""Signed, purpose-scoped, expiring tokens for the links we email.

A token names a subscriber by their `token_key` (random, per row: never the row id, so a link
can never match another person's row, and shows nothing about how many subscribers there are)
and the subscriber's `token_version`; bumping the version revokes every outstanding link at
once, which is what makes confirmation links single-use. Signatures are HMACs checked in constant
time by itsdangerous, with the current secret key or any of `secret_key_fallbacks` (rotation);
new links are signed with the current key.
"""

from __future__ import annotations

import base64
import hmac
import re
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.config import Settings


class Purpose(str, Enum):
    confirm = "confirm"
    unsubscribe = "unsubscribe"
    preferences = "preferences"
    view = "view"
    vote = "vote"


class TokenReason(str, Enum):
    """Why a link cannot be honoured (the web app shows a page for each)."""

    forged = "forged"  # not one we signed, cut short, or signed for another purpose
    expired = "expired"
    used = "used"  # already used, or replaced by a newer link
    gone = "gone"  # the subscriber it names has been erased
    inactive = "inactive"  # a link that acts for a reader who unsubscribed or bounced (a vote)


class TokenError(Exception):
    """A link that cannot be honoured, and why."""

    def __init__(self, reason: TokenReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class TokenData:
    """What a valid token says."""

    # The subscriber's token_key; an int for a link signed before revision 0002, naming a row id.
    subscriber_key: str | int
    version: int
    signed_at: datetime
    extra: dict[str, Any]


def _serializer(settings: Settings, purpose: Purpose) -> URLSafeTimedSerializer:
    """Signs with the current key; verifies with it and with every fallback (key rotation)."""
    return URLSafeTimedSerializer(settings.signing_keys, salt=f"newsletter.{purpose.value}")


def max_age(settings: Settings, purpose: Purpose) -> int:
    if purpose is Purpose.confirm:
        return settings.confirm_token_hours * 3600
    return settings.link_token_days * 86400


@lru_cache(maxsize=64)
def _signing_key(secret_key: str, purpose: Purpose) -> bytes:
    """The HMAC key itsdangerous derives from the secret and the purpose's salt."""
    return URLSafeTimedSerializer(secret_key, salt=f"newsletter.{purpose.value}").make_signer().derive_key()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_TIMESTAMP = struct.Struct(">Q")
_stamp: tuple[int, bytes] = (0, b"")


def _timestamp() -> bytes:
    """itsdangerous' timestamp field for now, encoded once a second."""
    global _stamp
    now = int(time.time())
    if _stamp[0] != now:
        _stamp = (now, _b64(_TIMESTAMP.pack(now).lstrip(b"\x00")))
    return _stamp[1]


_PLAIN_STRING = re.compile(r"[A-Za-z0-9_-]{0,64}\Z")  # JSON-encodes as itself, in quotes


def _json_scalar(value: Any) -> str | None:
    """`value` as compact JSON if it is an int or a plain string, else None."""
    if type(value) is int:  # noqa: E721 - not bool
        return str(value)
    if type(value) is str and _PLAIN_STRING.match(value):  # noqa: E721
        return f'"{value}"'
    return None


def make_token(settings: Settings, purpose: Purpose, subscriber_key: str, version: int, **extra: Any) -> str:
    """A URL-safe token for one subscriber (their `token_key`) and one purpose, checked by
    `read_token`.

    A digest signs ~25 links, so the usual small payload of integers and URL-safe strings is
    signed here directly: the derived key is cached and the HMAC is one C call. The token is
    what `URLSafeTimedSerializer.dumps` writes, byte for byte, with one exception: itsdangerous
    zlib-compresses a payload when that saves 2 or more bytes (rare for a random key, common
    for payloads that repeat themselves, such as long equal numbers), and zlib costs several
    times the rest, so this never compresses. Such a token has other bytes and verifies the
    same, since `read_token` always goes through itsdangerous (a test holds both to that).
    Anything else goes through itsdangerous itself.
    """
    data = {"s": subscriber_key, "v": version, **extra}
    fields = [_json_scalar(v) for v in data.values()]
    if None in fields or len(data) > 8:
        return _serializer(settings, purpose).dumps(data)
    payload = ",".join([f'"{k}":{v}' for k, v in zip(data, fields, strict=True)])
    value = _b64(b"{" + payload.encode("ascii") + b"}") + b"." + _timestamp()
    signature = hmac.digest(_signing_key(settings.secret_key, purpose), value, "sha1")
    return (value + b"." + _b64(signature)).decode("ascii")


def read_token(settings: Settings, purpose: Purpose, token: str) -> TokenData:
    """Verify signature, purpose and age; raise TokenError (forged, expired) otherwise."""
    if not token or len(token) > 512:
        raise TokenError(TokenReason.forged)
    try:
        data, signed_at = _serializer(settings, purpose).loads(
            token, max_age=max_age(settings, purpose), return_timestamp=True
        )
    except SignatureExpired as exc:
        raise TokenError(TokenReason.expired) from exc
    except BadSignature as exc:
        raise TokenError(TokenReason.forged) from exc
    if not isinstance(data, dict) or type(data.get("s")) not in (str, int):
        raise TokenError(TokenReason.forged)
    extra = {k: v for k, v in data.items() if k not in ("s", "v")}
    return TokenData(
        subscriber_key=data["s"], version=int(data.get("v", 0)), signed_at=signed_at, extra=extra
    )
