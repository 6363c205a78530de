"""Postmark's bounce and spam-complaint webhooks.

Postmark authenticates a webhook with the HTTP basic-auth credentials written into its URL
(NEWSLETTER_POSTMARK_WEBHOOK_USER / _PASSWORD); the web edge checks them before the body is
read. Postmark's bounce `Type`s map as below; every other type (AutoResponder, AddressChange,
ChallengeVerification, ManuallyDeactivated, …) and every other record (Delivery, Open, Click,
SubscriptionChange) is ignored.
"""

from __future__ import annotations

from pydantic import BaseModel

from newsletter.bounces.providers.base import Batch, Kind, Malformed, bounce, read_as, text

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
    record = read_as(Record, body, "a Postmark webhook record")
    kind = KINDS.get(record.Type or "") if record.RecordType in RECORDS else None
    if kind is None:
        return Batch(ignored=[f"postmark {text(record.RecordType)[:40]} {text(record.Type)[:40]}".strip()])
    if not record.Email:
        raise Malformed(f"The Postmark {record.Type} record has no Email.")
    diagnostic = [record.Type, record.Description, record.Details]
    return Batch(
        events=[bounce(kind, record.Email, "postmark", record.Details, diagnostic, record.BouncedAt)]
    )
