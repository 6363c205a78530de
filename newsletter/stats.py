"""Counts for monitoring: subscribers by status, each issue's deliveries by state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.models import Delivery, DeliveryState, Issue, Subscriber, SubscriberStatus


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


def issue_counts(session: Session) -> list[IssueCounts]:
    """Every issue's deliveries by state, newest issue first, in one grouped query."""
    rows = session.exec(
        select(Delivery.issue_id, Delivery.state, func.count()).group_by(
            col(Delivery.issue_id), col(Delivery.state)
        )
    ).all()
    counted = {(issue_id, state): n for issue_id, state, n in rows}
    issues = session.exec(select(Issue).order_by(col(Issue.id).desc())).all()
    return [
        IssueCounts(issue.id, issue.period, {s.value: counted.get((issue.id, s), 0) for s in DeliveryState})
        for issue in issues
        if issue.id is not None
    ]
