"""Postmark's bounce and spam-complaint webhooks.

Postmark authenticates a webhook with the HTTP basic-auth credentials written into its URL
(NEWSLETTER_POSTMARK_WEBHOOK_USER / _PASSWORD); the web edge checks them before the body is
read. Postmark's bounce `Type`s map as below; every other type (AutoResponder, AddressChange,
ChallengeVerification, ManuallyDeactivated, …) and every other record (Delivery, Open, Click,
SubscriptionChange) is ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from newsletter.bounces.events import BounceEvent
from newsletter.bounces.providers.base import Batch, Kind, Malformed, read_json, status_code, text
from newsletter.bounces.providers.base import timestamp as parse_time

KINDS: dict[str, Kind] = {
    "HardBounce": "hard",
    "BadEmailAddress": "hard",
    "SoftBounce": "soft",
    "Transient": "soft",
    "DnsError": "soft",
    "Blocked": "policy",
    "DMARCPolicy": "policy",
    "SpamComplaint": "complaint",
    "Unsubscribe": "unsubscribe",
}
RECORDS = ("Bounce", "SpamComplaint")


class Record(BaseModel):
    RecordType: str = "Bounce"  # older bounce webhooks send no RecordType
    Type: str | None = None
    Email: str | None = None
    Description: str | None = None
    Details: str | None = None
    BouncedAt: str | None = None


def read(body: bytes) -> Batch:
    """The event of one Postmark webhook call."""
    record = _parse(read_json(body))
    kind = KINDS.get(record.Type or "") if record.RecordType in RECORDS else None
    if kind is None:
        return Batch(ignored=[f"postmark {text(record.RecordType)[:40]} {text(record.Type)[:40]}".strip()])
    if not record.Email:
        raise Malformed(f"The Postmark {record.Type} record has no Email.")
    return Batch(
        events=[
            BounceEvent(
                kind=kind,
                address=record.Email,
                delivery_id=None,
                status=status_code(record.Details),
                diagnostic=text(" ".join(p for p in (record.Type, record.Description, record.Details) if p)),
                source="postmark",
                received_at=parse_time(record.BouncedAt),
            )
        ]
    )


def _parse(payload: Any) -> Record:
    try:
        return Record.model_validate(payload)
    except ValidationError as exc:
        raise Malformed("Not a Postmark webhook record.") from exc
