"""What operators see of bounces: a reader's events, and each issue's counts by kind."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.models import BounceKind, BounceRecord


class BounceEventPublic(BaseModel):
    """One recorded event, as `newsletter subscribers show` lists it."""

    kind: BounceKind
    status: str
    diagnostic: str
    source: str
    effect: str
    issue_id: int | None
    delivery_id: int | None
    received_at: datetime


def bounce_events_for(session: Session, subscriber_id: int) -> list[BounceEventPublic]:
    """A reader's bounces, complaints and mailto: unsubscribes, oldest first."""
    rows = session.exec(
        select(BounceRecord)
        .where(BounceRecord.subscriber_id == subscriber_id)
        .order_by(col(BounceRecord.received_at), col(BounceRecord.id))
    ).all()
    return [BounceEventPublic.model_validate(row, from_attributes=True) for row in rows]


COUNTED = (BounceKind.hard, BounceKind.soft, BounceKind.policy, BounceKind.complaint)


def no_bounces() -> dict[str, int]:
    return {k.value: 0 for k in COUNTED}


def bounce_counts_by_issue(session: Session) -> dict[int, dict[str, int]]:
    """{issue id: {hard, soft, policy, complaint: count}} for every issue with any event."""
    rows = session.exec(
        select(BounceRecord.issue_id, BounceRecord.kind, func.count())
        .where(col(BounceRecord.issue_id).is_not(None))
        .group_by(col(BounceRecord.issue_id), col(BounceRecord.kind))
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for issue_id, kind, n in rows:
        if issue_id is not None and kind in COUNTED:
            counts.setdefault(issue_id, no_bounces())[BounceKind(kind).value] = n
    return counts


def bounce_counts(session: Session, issue_id: int) -> dict[str, int]:
    """One issue's counts by kind, every counted kind present."""
    return bounce_counts_by_issue(session).get(issue_id) or no_bounces()
