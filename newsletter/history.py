"""One reader's whole story for the operator: consent, every email sent, failures, bounces, votes.

`subscriber_history` is a plain function returning a pydantic model: `newsletter subscribers
show` prints it and the admin API can return it as it is. No tokens, no learned profile.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Session, col, select

from newsletter import subscriptions as subs
from newsletter.bounces.reports import BounceEventPublic, bounce_events_for
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import NotFound
from newsletter.ledger.listing import DeliveryRecord, delivery_records
from newsletter.models import (
    ConsentEvent,
    DeliveryState,
    JourneyEmail,
    Paper,
    SubscriberPublic,
    Vote,
    saved_id,
)

TROUBLE = {DeliveryState.failed, DeliveryState.deferred}
BOUNCE_EVENTS = ("bounced", "unsubscribed:complaint")  # what bounce reports and complaints record
MAX_ROWS = 10_000  # per kind: years of daily digests


class ConsentEntry(BaseModel):
    event: str  # signup_requested, confirmed, imported, preferences_changed, unsubscribed:<via>, …
    at: datetime
    ip: str | None
    user_agent: str | None
    wording: str | None


class JourneyRecord(BaseModel):
    """A confirm, welcome or already-subscribed email and what the server answered."""

    id: int
    kind: str
    state: DeliveryState
    attempts: int
    smtp_code: int | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None


class VoteEntry(BaseModel):
    issue_id: int
    paper_id: int
    paper_title: str
    direction: int  # +1 more like this, -1 less
    at: datetime


class SubscriberHistory(BaseModel):
    subscriber: SubscriberPublic
    consent: list[ConsentEntry]
    digests: list[DeliveryRecord]
    journey_emails: list[JourneyRecord]
    failures: list[DeliveryRecord | JourneyRecord]  # digests and journey emails not (yet) sent
    bounces: list[ConsentEntry]  # the address bounced or complained (its consent transitions)
    bounce_reports: list[BounceEventPublic]  # every bounce, complaint or mailto: report received
    votes: list[VoteEntry]


def subscriber_history(settings: Settings, email: str) -> SubscriberHistory:
    """Everything that happened to `email`, oldest first; an unknown address is an
    `OperatorError`."""
    with session_scope(settings.database_url) as session:
        sub = subs.find_by_email(session, email)
        if sub is None:
            raise NotFound(f"no subscriber with address {email}")
        sub_id = saved_id(sub)
        consent = [
            ConsentEntry.model_validate(c, from_attributes=True) for c in _rows(session, ConsentEvent, sub_id)
        ]
        digests = delivery_records(session, list(DeliveryState), subscriber_id=sub_id, limit=MAX_ROWS)
        journey = [
            JourneyRecord.model_validate(j, from_attributes=True)
            for j in _rows(session, JourneyEmail, sub_id)
        ]
        return SubscriberHistory(
            subscriber=SubscriberPublic.model_validate(sub),
            consent=consent,
            digests=digests,
            journey_emails=journey,
            failures=[
                *(d for d in digests if d.state in TROUBLE),
                *(j for j in journey if j.state in TROUBLE),
            ],
            bounces=[c for c in consent if c.event in BOUNCE_EVENTS],
            bounce_reports=bounce_events_for(session, sub_id),
            votes=_votes(session, sub_id),
        )


def _rows(session: Session, table: type[ConsentEvent] | type[JourneyEmail], sub_id: int) -> list:
    stmt = select(table).where(table.subscriber_id == sub_id).order_by(col(table.id)).limit(MAX_ROWS)
    return list(session.exec(stmt))


def _votes(session: Session, sub_id: int) -> list[VoteEntry]:
    stmt = (
        select(Vote, Paper.title)
        .join(Paper, col(Paper.id) == Vote.paper_id)
        .where(Vote.subscriber_id == sub_id)
        .order_by(col(Vote.id))
        .limit(MAX_ROWS)
    )
    return [
        VoteEntry(issue_id=v.issue_id, paper_id=v.paper_id, paper_title=title, direction=v.direction, at=v.at)
        for v, title in session.exec(stmt)
    ]
