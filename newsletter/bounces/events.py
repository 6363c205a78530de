"""One bounce, complaint or unsubscribe from any source, recorded once and applied.

Every source ends here: DSNs and ARF reports from the inbound endpoint, mailto: unsubscribes,
provider webhooks (Amazon SES, Mailgun, Postmark) and the generic webhook. The event names its
message (a ledger row or a journey email, from a VERP token or a provider's message id) or only
an address. What it does to the reader:

- hard: bounced at once (`bounce_hard_immediate`), else `bounce_hard_weight` on the score;
- soft: `bounce_soft_weight` on the score (`scoring.py`), bounced at the threshold;
- policy: counted for the issue only, never against the reader;
- complaint: unsubscribed and suppressed (operators cannot import them back);
- unsubscribe: unsubscribed.

An event about a message counts once per kind: a replayed DSN or webhook changes nothing. The
caller commits.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter import ledger, suppression
from newsletter import subscriptions as subs
from newsletter.bounces.scoring import raised_score
from newsletter.config import Settings
from newsletter.logs import event as log_event
from newsletter.models import (
    BounceKind,
    BounceRecord,
    JourneyEmail,
    Subscriber,
    SubscriberStatus,
    saved_id,
    utcnow,
)
from newsletter.validation import InvalidInput

log = logging.getLogger("newsletter.bounces")
SOURCES = frozenset({"dsn", "arf", "mailto", "ses", "mailgun", "postmark", "sendgrid", "webhook"})


@dataclass(frozen=True)
class BounceEvent:
    """What a source says happened. `kind`: hard, soft, policy, complaint or unsubscribe;
    `status`: the RFC 3463 code ("5.1.1") when there is one; `source`: one of SOURCES."""

    kind: BounceKind | str
    address: str | None = None
    delivery_id: int | None = None
    status: str = ""
    diagnostic: str = ""
    source: str = "webhook"
    received_at: datetime = field(default_factory=utcnow)
    journey_email_id: int | None = None
    subscriber_id: int | None = None  # a mailto: unsubscribe names the reader, not a message
    message_id: str | None = None  # the Message-ID a provider's event names (SES, Mailgun)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", BounceKind(self.kind))  # ValueError for anything else
        if self.source not in SOURCES:
            raise ValueError(f"unknown bounce source {self.source!r}")

    @property
    def category(self) -> BounceKind:
        return BounceKind(self.kind)


class Effect(str, enum.Enum):
    bounced = "bounced"  # the reader is bounced now
    scored = "scored"  # the soft-bounce score went up, below the threshold
    noted = "noted"  # recorded; nothing to change (already bounced, a second soft bounce today)
    policy = "policy"  # counted for the issue only
    unsubscribed = "unsubscribed"
    duplicate = "duplicate"  # this message's event of this kind was recorded before: nothing done
    unknown = "unknown"  # names no subscriber we have: nothing recorded


@dataclass(frozen=True)
class Outcome:
    effect: Effect
    subscriber_id: int | None = None
    event_id: int | None = None

    @property
    def changed(self) -> bool:
        """Whether the reader's state changed (bounced or unsubscribed by this event)."""
        return self.effect in (Effect.bounced, Effect.unsubscribed)


@dataclass(frozen=True)
class _Target:
    sub: Subscriber
    issue_id: int | None = None


def record_bounce(session: Session, settings: Settings, event: BounceEvent) -> Outcome:
    """Record `event` and apply it to its reader (see the module docstring); never raises for
    an event that names nobody, or that was recorded before."""
    target = _target(session, event)
    if target is not None and event.delivery_id is None and event.message_id:
        # A provider names the address and our Message-ID: the delivery is found among that
        # reader's own rows, so the issue counts the bounce and a replay is a duplicate.
        found = ledger.delivery_of_message(session, saved_id(target.sub), event.message_id)
        if found is not None:
            event, target = replace(event, delivery_id=found[0]), _Target(target.sub, found[1])
    if target is None:
        log_event(
            log,
            "bounce.unknown",
            kind=event.category.value,
            source=event.source,
            delivery_id=event.delivery_id,
        )
        return Outcome(Effect.unknown)
    sub = target.sub
    if _said_before(session, event, sub):
        return Outcome(Effect.duplicate, sub.id)
    record = BounceRecord(
        subscriber_id=saved_id(sub),
        delivery_id=event.delivery_id,
        journey_email_id=event.journey_email_id,
        issue_id=target.issue_id,
        kind=event.category,
        status=_printable(event.status)[:16],
        diagnostic=_printable(event.diagnostic)[:1000],
        source=event.source,
        effect=Effect.noted.value,
        received_at=event.received_at,
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:
        return Outcome(Effect.duplicate, sub.id)
    effect = _apply(session, settings, event, sub)
    record.effect = effect.value
    session.add(record)
    if event.delivery_id is not None and record.kind in (BounceKind.hard, BounceKind.soft, BounceKind.policy):
        ledger.note_bounce(session, event.delivery_id, f"bounced after 250: {_reason(event)}")
    session.flush()
    log_event(
        log,
        "bounce.recorded",
        kind=record.kind.value,
        effect=effect.value,
        subscriber_id=sub.id,
        issue_id=target.issue_id,
        source=event.source,
        status=event.status,
    )
    return Outcome(effect, sub.id, record.id)


def _target(session: Session, event: BounceEvent) -> _Target | None:
    """The reader (and issue) an event is about: its message's, else its address's."""
    if event.delivery_id is not None:
        owner = ledger.delivery_owner(session, event.delivery_id)
        sub = session.get(Subscriber, owner[1]) if owner else None
        return _Target(sub, owner[0]) if sub is not None and owner else None
    if event.journey_email_id is not None:
        email = session.get(JourneyEmail, event.journey_email_id)
        sub = session.get(Subscriber, email.subscriber_id) if email is not None else None
        return _Target(sub) if sub is not None else None
    if event.subscriber_id is not None:
        sub = session.get(Subscriber, event.subscriber_id)
        return _Target(sub) if sub is not None else None
    if not event.address:
        return None
    try:
        sub = subs.find_by_email(session, event.address)
    except InvalidInput:
        return None
    return _Target(sub) if sub is not None else None


def _said_before(session: Session, event: BounceEvent, sub: Subscriber) -> bool:
    """A complaint or unsubscribe that names no message, about a reader it can no longer
    change, who has one of that kind on record: a replay, not news."""
    if event.delivery_id is not None or event.journey_email_id is not None:
        return False  # the unique index decides for events about a message
    if event.category not in (BounceKind.complaint, BounceKind.unsubscribe):
        return False
    if sub.status in (SubscriberStatus.confirmed, SubscriberStatus.pending):
        return False
    earlier = select(BounceRecord.id).where(
        BounceRecord.subscriber_id == sub.id, BounceRecord.kind == event.category
    )
    return session.exec(earlier).first() is not None


def _printable(text: str) -> str:
    """What an MTA or provider wrote, without control characters (PostgreSQL refuses NUL)."""
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _reason(event: BounceEvent) -> str:
    parts = (event.category.value, event.status, f"({event.source})", event.diagnostic)
    return _printable(" ".join(p for p in parts if p))


def _apply(session: Session, settings: Settings, event: BounceEvent, sub: Subscriber) -> Effect:
    kind = event.category
    if kind is BounceKind.policy:
        return Effect.policy
    if kind is BounceKind.complaint:
        suppression.suppress(session, sub.email_key, "complaint")
        changed = subs.unsubscribe(session, sub, subs.Client(user_agent=event.source), via="complaint")
        return Effect.unsubscribed if changed else Effect.noted
    if kind is BounceKind.unsubscribe:
        changed = subs.unsubscribe(session, sub, subs.Client(user_agent=event.source), via=event.source)
        return Effect.unsubscribed if changed else Effect.noted
    if sub.status is not SubscriberStatus.confirmed:
        return Effect.noted  # pending, unsubscribed or bounced already: nothing to stop
    if kind is BounceKind.hard and settings.bounce_hard_immediate:
        subs.mark_bounced(session, sub, _reason(event))
        return Effect.bounced
    weight = settings.bounce_hard_weight if kind is BounceKind.hard else settings.bounce_soft_weight
    score = raised_score(settings, sub.bounce_score, sub.bounce_score_at, event.received_at, weight)
    if score is None:
        return Effect.noted
    sub.bounce_score, sub.bounce_score_at = score, event.received_at
    session.add(sub)
    if score >= settings.bounce_score_threshold:
        subs.mark_bounced(session, sub, f"bounce score {score:.2f}; the last: {_reason(event)}")
        return Effect.bounced
    return Effect.scored
