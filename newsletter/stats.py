"""Counts for monitoring: subscribers by status, each issue's deliveries by state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from newsletter.ledger import counts_by_issue
from newsletter.models import DeliveryState, Frequency, Issue, Subscriber, SubscriberStatus


@dataclass(frozen=True)
class IssueCounts:
    id: int
    period: str
    counts: dict[str, int]  # deliveries by state, every state present


def subscriber_counts(session: Session) -> dict[str, int]:
    """Subscribers by status, every status present (0 when there are none)."""
    rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
    counted = dict(rows)
    return {status.value: counted.get(status, 0) for status in SubscriberStatus}


def reader_count(session: Session, frequency: Frequency, *where: ColumnElement[bool]) -> int:
    """Confirmed subscribers of one frequency (and `where`, e.g. a schedule slot's readers):
    the readers an edition of it would go to."""
    return session.exec(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.confirmed, Subscriber.frequency == frequency, *where)
    ).one()


def issue_counts(session: Session) -> list[IssueCounts]:
    """Every issue's deliveries by state, newest issue first."""
    counted = counts_by_issue(session)
    none = {s.value: 0 for s in DeliveryState}
    issues = session.exec(select(Issue).order_by(col(Issue.id).desc())).all()
    return [IssueCounts(i.id, i.period, counted.get(i.id, none)) for i in issues if i.id is not None]
