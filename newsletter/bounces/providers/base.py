"""What every adapter shares: its errors, its result, the JSON reader, and text made safe.

Adapters yield `newsletter.bounces.events.BounceEvent`s; the web edge records each with
`record_bounce`, the entry point every source shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from newsletter.bounces.dsn import kind_of_status
from newsletter.bounces.events import BounceEvent
from newsletter.models import BounceKind
from newsletter.values import JSONTooDeep, load_json

Kind = Literal["hard", "soft", "policy", "complaint", "unsubscribe"]
Shape = TypeVar("Shape", bound=BaseModel)
STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")  # an RFC 3463 enhanced status code
MAX_TEXT = 500  # characters of a diagnostic kept (PostgreSQL refuses NUL bytes: dropped)


class Refused(Exception):
    """The call is not the provider's (bad signature, unknown topic, stale or replayed): 403.
    `details` go into the log event, for the operator (unverified: never act on them)."""

    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.details = details


class Malformed(Exception):
    """The body is not what the provider sends (not JSON, missing fields): 400."""


@dataclass
class Batch:
    """What one webhook call said: events to record, and what was ignored (for the log)."""

    events: list[BounceEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_json(body: bytes) -> Any:
    """The JSON value of a request body; Malformed if it is not JSON in UTF-8."""
    try:
        return load_json(body)
    except JSONTooDeep as exc:  # '[' * 60000: no provider nests that deep
        raise Malformed("The body's JSON is nested too deeply.") from exc
    except ValueError as exc:  # also UnicodeDecodeError
        raise Malformed("The body is not JSON.") from exc


def read_as(shape: type[Shape], body: bytes, what: str) -> Shape:
    """The body as the provider's documented `shape`; Malformed (naming `what`) if it is not."""
    try:
        return shape.model_validate(read_json(body))
    except ValidationError as exc:
        raise Malformed(f"Not {what}.") from exc


def bounce(
    kind: Kind,
    address: str,
    source: str,
    status: Any,
    diagnostic: list[Any],
    when: Any,
    message_id: Any = None,
) -> BounceEvent:
    """One event as every adapter makes it: the RFC 3463 code found in `status`, the non-empty
    parts of `diagnostic` joined and made safe, `when` read as a time (now if unreadable).

    A bounce whose status is x.7.x is a refusal by policy (a blocklist listing our server, DMARC,
    spam filtering), never held against the reader, whatever the provider calls it: SES,
    Mailgun and Postmark report a Spamhaus listing as a permanent or hard bounce, which bounced
    every reader at that mailbox provider, where the same refusal in a DSN did not."""
    code = status_code(status)
    if kind in ("hard", "soft") and kind_of_status(code) is BounceKind.policy:
        kind = "policy"
    return BounceEvent(
        kind=kind,
        address=address,
        status=code,
        diagnostic=text(" ".join(str(part) for part in diagnostic if part)),
        source=source,
        received_at=timestamp(when),
        message_id=(text(message_id)[:255] or None) if isinstance(message_id, str) else None,
    )


def text(value: Any) -> str:
    """A provider's free text made safe to store: printable characters, at most MAX_TEXT."""
    return "".join(ch for ch in str("" if value is None else value)[:MAX_TEXT] if ch.isprintable())


def timestamp(value: Any) -> datetime:
    """A provider's time (ISO 8601 or Unix seconds) as an aware UTC datetime; now if unreadable."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def status_code(value: Any) -> str:
    """The RFC 3463 code ("5.1.1") in a provider's status field, or ""."""
    found = STATUS.search(str(value or ""))
    return found.group(0) if found else ""
