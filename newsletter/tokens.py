"""Signed, purpose-scoped, expiring tokens for the links we email.

A token names a subscriber and the subscriber's `token_version`; bumping the version (on
confirmation, erasure or a fresh signup) revokes every outstanding link at once, which is what
makes confirmation links single-use. Signatures are HMACs checked in constant time by itsdangerous.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.config import Settings


class Purpose(str, Enum):
    confirm = "confirm"
    unsubscribe = "unsubscribe"
    preferences = "preferences"
    view = "view"
    vote = "vote"


class TokenError(Exception):
    """A link that cannot be honoured; `reason` is one of forged, expired, used."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    version: int
    extra: dict[str, Any]


def _serializer(settings: Settings, purpose: Purpose) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=f"newsletter.{purpose.value}")


def max_age(settings: Settings, purpose: Purpose) -> int:
    if purpose is Purpose.confirm:
        return settings.confirm_token_hours * 3600
    return settings.link_token_days * 86400


def make_token(settings: Settings, purpose: Purpose, subscriber_id: int, version: int,
               **extra: Any) -> str:
    """A URL-safe token for one subscriber and one purpose."""
    return _serializer(settings, purpose).dumps({"s": subscriber_id, "v": version, **extra})


def read_token(settings: Settings, purpose: Purpose, token: str) -> TokenData:
    """Verify signature, purpose and age; raise TokenError("forged"|"expired") otherwise."""
    if not token or len(token) > 512:
        raise TokenError("forged")
    try:
        data = _serializer(settings, purpose).loads(token, max_age=max_age(settings, purpose))
    except SignatureExpired as exc:
        raise TokenError("expired") from exc
    except BadSignature as exc:
        raise TokenError("forged") from exc
    if not isinstance(data, dict) or not isinstance(data.get("s"), int):
        raise TokenError("forged")
    extra = {k: v for k, v in data.items() if k not in ("s", "v")}
    return TokenData(subscriber_id=data["s"], version=int(data.get("v", 0)), extra=extra)
