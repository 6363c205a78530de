"""Amazon SES bounce and complaint notifications, delivered by SNS to an HTTPS subscription.

The SNS envelope is checked before anything in it is believed: its RSA signature (SignatureVersion
1 is SHA1withRSA, 2 is SHA256withRSA, over the canonical string of its signed fields) against the
certificate(s) in NEWSLETTER_SES_SNS_CERT, which the operator downloads once: SigningCertURL is
never fetched here, so a forged message cannot point us at a key of its choosing (it is logged
when a signature does not verify, for the operator to fetch and check by hand). Its TopicArn
must be one of NEWSLETTER_SES_SNS_TOPIC_ARNS and its Timestamp recent. A SubscriptionConfirmation
is logged with its SubscribeURL for the operator to open: nothing is fetched on their behalf.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ValidationError

from newsletter.bounces.dsn import NOT_COMPLAINTS
from newsletter.bounces.events import BounceEvent
from newsletter.bounces.providers.base import Batch, Kind, Malformed, Refused, bounce, read_json, text
from newsletter.config import ConfigError, Settings
from newsletter.logs import event as log_event

log = logging.getLogger("newsletter.bounces.ses")

_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
OPTIONAL_FIELDS = {"Subject"}
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
LOG_EVENTS = {
    "SubscriptionConfirmation": "sns.subscription_confirmation",
    "UnsubscribeConfirmation": "sns.unsubscribe_confirmation",
}
BOUNCE_KINDS: dict[str, Kind] = {"Permanent": "hard", "Transient": "soft", "Undetermined": "soft"}


class Recipient(BaseModel):
    emailAddress: str  # noqa: N815 - SES's own field names
    status: str | None = None
    diagnosticCode: str | None = None  # noqa: N815


class Bounce(BaseModel):
    bounceType: str  # noqa: N815
    bounceSubType: str = ""  # noqa: N815
    bouncedRecipients: list[Recipient]  # noqa: N815
    timestamp: str | None = None


class Complaint(BaseModel):
    complainedRecipients: list[Recipient]  # noqa: N815
    complaintFeedbackType: str | None = None  # noqa: N815
    complaintSubType: str | None = None  # noqa: N815
    timestamp: str | None = None


def load_keys(path: Path) -> list[rsa.RSAPublicKey]:
    """The RSA keys of the certificates in the PEM file at `path` (several while SNS rotates its
    key); ConfigError if it cannot be read or holds none. Read again when the file changes."""
    try:
        return _keys(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"NEWSLETTER_SES_SNS_CERT ({path}) is not a readable PEM certificate: {exc}"
        ) from exc


@lru_cache(maxsize=4)
def _keys(path: str, _mtime: int) -> list[rsa.RSAPublicKey]:
    keys = [c.public_key() for c in x509.load_pem_x509_certificates(Path(path).read_bytes())]
    rsa_keys = [k for k in keys if isinstance(k, rsa.RSAPublicKey)]
    if len(rsa_keys) != len(keys):
        raise ValueError("SNS signs with RSA; a certificate in the file has another key type")
    return rsa_keys


def canonical_string(message: dict[str, Any]) -> bytes:
    """The bytes SNS signs: each signed field present, as `name\\nvalue\\n`, in SNS's order."""
    fields = SIGNED_FIELDS[message["Type"]]
    return "".join(f"{k}\n{message[k]}\n" for k in fields if message.get(k) is not None).encode()


def verify(message: Any, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """`message` if it is an SNS message SNS signed for one of our topics, recently; else Refused
    (or Malformed when it is not an SNS message at all)."""
    if not isinstance(message, dict) or message.get("Type") not in SIGNED_FIELDS:
        raise Malformed("Not an SNS message (Type missing or unknown).")
    for name in (*SIGNED_FIELDS[message["Type"]], "Signature", "SignatureVersion"):
        present = message.get(name)
        if not isinstance(present, str) and not (name in OPTIONAL_FIELDS and present is None):
            raise Malformed(f"The SNS message has no {name}.")
    if message["TopicArn"] not in settings.ses_sns_topic_arns:
        raise Refused("unknown topic")
    sent = _sent_at(message["Timestamp"])
    age = ((now or datetime.now(UTC)) - sent).total_seconds() if sent else None
    if age is None or abs(age) > settings.provider_event_max_age_seconds:
        raise Refused("stale timestamp")
    if settings.ses_sns_cert is None:
        raise Refused("no certificate configured", signing_cert_url=message.get("SigningCertURL"))
    if not _signed(message, settings.ses_sns_cert):
        # the operator may need this certificate (the first one, or SNS rotated its key)
        raise Refused("bad signature", signing_cert_url=message.get("SigningCertURL"))
    return message


def _sent_at(stamp: str) -> datetime | None:
    """SNS's Timestamp (ISO 8601, UTC); None if it is not one (then no age can be trusted)."""
    try:
        sent = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return sent if sent.tzinfo else sent.replace(tzinfo=UTC)


def _signed(message: dict[str, Any], certificates: Path) -> bool:
    algorithm = HASHES.get(message["SignatureVersion"])
    if algorithm is None:
        return False
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except binascii.Error:
        return False
    signed = canonical_string(message)
    for key in load_keys(certificates):
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
            return True
        except InvalidSignature:
            continue
    return False


def read(body: bytes, settings: Settings) -> Batch:
    """The events of one SNS call: a bounce gives one event per recipient, a complaint likewise;
    other notifications and the subscription messages are ignored (the latter logged)."""
    message = verify(read_json(body), settings)
    if message["Type"] != "Notification":
        log_event(
            log,
            LOG_EVENTS[message["Type"]],
            logging.WARNING,
            topic=message["TopicArn"],
            subscribe_url=message.get("SubscribeURL"),
            action="open subscribe_url once to confirm the subscription"
            if message["Type"] == "SubscriptionConfirmation"
            else "none",
        )
        return Batch(ignored=[message["Type"]])
    text_message = message["Message"].lstrip()[:1] not in ("{", "[")
    if text_message:  # SES's own words, e.g. "Successfully validated SNS topic for Amazon SES …"
        return Batch(ignored=[f"ses message {text(message['Message'])[:60]}"])
    return notification_events(read_json(message["Message"].encode()))


def notification_events(notification: Any) -> Batch:
    """The events of one SES notification (`notificationType`) or event record (`eventType`)."""
    if not isinstance(notification, dict):
        raise Malformed("The SNS Message is not an SES notification.")
    kind = notification.get("notificationType") or notification.get("eventType")
    message_id = _message_id(notification.get("mail"))
    try:
        if kind == "Bounce":
            return Batch(events=_bounce_events(Bounce.model_validate(notification.get("bounce")), message_id))
        if kind == "Complaint":
            complaint = Complaint.model_validate(notification.get("complaint"))
            # The ARF Feedback-Type: a "not-spam" report takes a complaint back (as in an ARF).
            if (feedback := (complaint.complaintFeedbackType or "").strip().lower()) in NOT_COMPLAINTS:
                return Batch(ignored=[f"ses complaint {feedback}"])
            return Batch(events=_complaint_events(complaint, message_id))
    except ValidationError as exc:
        raise Malformed(f"The SES {kind} has missing or invalid fields.") from exc
    return Batch(ignored=[f"ses {text(kind)[:40]}"])


def _message_id(mail: Any) -> Any:
    """The Message-ID header of the message an SES notification is about (ours, not SES's own
    `messageId`): from `commonHeaders`, else from the `headers` list."""
    if not isinstance(mail, dict):
        return None
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return common["messageId"]
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else ():
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return header.get("value")
    return None


def _bounce_events(report: Bounce, message_id: Any = None) -> list[BounceEvent]:
    kind = BOUNCE_KINDS.get(report.bounceType, "soft")
    detail = f"{report.bounceType}/{report.bounceSubType}:"
    return [
        bounce(
            kind, r.emailAddress, "ses", r.status, [detail, r.diagnosticCode], report.timestamp, message_id
        )
        for r in report.bouncedRecipients
    ]


def _complaint_events(complaint: Complaint, message_id: Any = None) -> list[BounceEvent]:
    detail = "/".join(d for d in (complaint.complaintFeedbackType, complaint.complaintSubType) if d)
    return [
        bounce(
            "complaint", r.emailAddress, "ses", "", [detail or "complaint"], complaint.timestamp, message_id
        )
        for r in complaint.complainedRecipients
    ]
