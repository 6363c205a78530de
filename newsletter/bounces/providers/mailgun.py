"""Mailgun event webhooks (JSON): `failed`, `complained` and `unsubscribed` events.

Mailgun signs each call inside its body: `signature.signature` is the hex HMAC-SHA256 of
`timestamp + token` under the account's HTTP webhook signing key (NEWSLETTER_MAILGUN_SIGNING_KEY).
The signature is compared in constant time, the timestamp must be recent, and each token counts
once: a call replayed with the same signature is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from newsletter.bounces.providers.base import Batch, Kind, Malformed, Refused, bounce, read_as, text
from newsletter.config import Settings
from newsletter.values import digits_only

# "temporary" is one failed attempt that Mailgun retries (django-anymail reads it as deferred);
# when the retries run out it reports a "permanent" failure. Counted as soft, greylisting alone
# bounced readers within a few weeks.
FAILED: dict[str, Kind] = {"permanent": "hard"}
OTHERS: dict[str, Kind] = {"complained": "complaint", "unsubscribed": "unsubscribe"}


class TokenStore(Protocol):
    def first_use(self, token: str, ttl: int) -> bool: ...


class Signature(BaseModel):
    timestamp: str
    token: str = Field(min_length=1, max_length=200)
    signature: str


class DeliveryStatus(BaseModel):
    code: int | str | None = None
    enhanced_code: str | None = Field(default=None, alias="enhanced-code")
    message: str | None = None
    description: str | None = None


class EventData(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    event: str
    recipient: str | None = None
    severity: str | None = None
    reason: str | None = None
    timestamp: float | None = None
    delivery_status: DeliveryStatus = Field(default_factory=DeliveryStatus, alias="delivery-status")
    message: dict[str, Any] = Field(default_factory=dict)  # "headers": {"message-id": …} of ours

    @property
    def message_id(self) -> Any:
        headers = self.message.get("headers")
        return headers.get("message-id") if isinstance(headers, dict) else None


class Call(BaseModel):
    signature: Signature
    event_data: EventData = Field(alias="event-data")


def expected_signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def read(body: bytes, settings: Settings, tokens: TokenStore, now: float | None = None) -> Batch:
    """The event of one Mailgun call, once its signature, timestamp and token are checked."""
    call = read_as(Call, body, "a Mailgun webhook call (signature and event-data)")
    verify(call.signature, settings, tokens, now)
    data = call.event_data
    kind = FAILED.get(data.severity or "") if data.event == "failed" else OTHERS.get(data.event)
    if kind is None:
        return Batch(ignored=[f"mailgun {text(data.event)[:40]} {text(data.severity)[:20]}".strip()])
    if not data.recipient:
        raise Malformed(f"The Mailgun {data.event} event has no recipient.")
    status = data.delivery_status
    diagnostic = [data.reason, status.code, status.message, status.description]
    return Batch(
        events=[
            bounce(
                kind,
                data.recipient,
                "mailgun",
                status.enhanced_code or status.message,
                diagnostic,
                data.timestamp,
                data.message_id,
            )
        ]
    )


def verify(signature: Signature, settings: Settings, tokens: TokenStore, now: float | None = None) -> None:
    """Refused unless Mailgun signed this call with our key, recently, and its token is new.
    The token is remembered only once the signature holds: forged calls cannot use tokens up."""
    key = settings.mailgun_signing_key or ""
    expected = expected_signature(key, signature.timestamp, signature.token)
    if not key or not hmac.compare_digest(expected.encode(), signature.signature.strip().lower().encode()):
        raise Refused("bad signature")
    max_age = settings.provider_event_max_age_seconds
    stamp = signature.timestamp.strip()
    if not digits_only(stamp) or abs((now or time.time()) - int(stamp)) > max_age:
        raise Refused("stale timestamp")
    if not tokens.first_use(signature.token, 2 * max_age):
        raise Refused("replayed token")
