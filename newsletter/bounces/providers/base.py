"""What every adapter shares: its errors, its result, the JSON reader, and the event it yields.

`BounceEvent` and `record` stand in for `newsletter.bounces.events` (VERP, DSNs and scoring) until
that module is merged: same shape, and hard bounces and complaints applied through `feedback`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlmodel import Session

from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.logs import event as log_event
from newsletter.validation import InvalidInput

log = logging.getLogger("newsletter.bounces.providers")

Kind = Literal["hard", "soft", "policy", "complaint", "unsubscribe"]
Source = Literal["ses", "mailgun", "postmark"]
MAX_TEXT = 500  # characters of a status or diagnostic kept (PostgreSQL refuses NUL bytes: dropped)


class Refused(Exception):
    """The call is not the provider's (bad signature, unknown topic, stale or replayed): 403."""


class Malformed(Exception):
    """The body is not what the provider sends (not JSON, missing fields): 400."""


@dataclass(frozen=True)
class BounceEvent:
    kind: Kind
    address: str
    delivery_id: int | None
    status: str
    diagnostic: str
    source: Source
    received_at: datetime


@dataclass
class Batch:
    """What one webhook call said: events to record, and what was ignored (for the log)."""

    events: list[BounceEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_json(body: bytes) -> Any:
    """The JSON value of a request body; Malformed if it is not JSON in UTF-8."""
    try:
        return json.loads(body)
    except ValueError as exc:  # also UnicodeDecodeError
        raise Malformed("The body is not JSON.") from exc


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


def record(session: Session, settings: Settings, event: BounceEvent) -> None:  # noqa: ARG001
    """Apply one event; an address we do not know, or cannot read, changes nothing."""
    try:
        sub = subs.find_by_email(session, event.address)
    except InvalidInput:
        sub = None
    if sub is None:
        return
    reason = f"{event.source}: {event.status} {event.diagnostic}".strip()
    if event.kind == "hard":
        subs.mark_bounced(session, sub, reason)
    elif event.kind in ("complaint", "unsubscribe"):
        subs.unsubscribe(session, sub, subs.Client(user_agent=event.source), via=event.kind)
    log_event(log, "bounce.recorded", source=event.source, kind=event.kind, subscriber_id=sub.id)
