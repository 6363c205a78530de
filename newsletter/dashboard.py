"""What the admin pages summarise (read-only): readers week by week, the last issues with their
outcomes and votes, and subscriber search."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from newsletter.bounces.reports import bounce_counts_by_issue, no_bounces
from newsletter.ledger import counts_by_issue
from newsletter.models import (
    LEFT,
    BounceKind,
    DeliveryState,
    Issue,
    Subscriber,
    SubscriberStatus,
    Vote,
    saved_id,
)


@dataclass(frozen=True)
class Week:
    """One week of the growth chart: readers confirmed at its end, and who came and went in it."""

    start: datetime
    readers: int
    joined: int
    left: int


@dataclass(frozen=True)
class IssueSummary:
    id: int
    title: str
    period: str
    created_at: datetime
    counts: dict[str, int]  # deliveries by state, every state present
    bounced: int
    complained: int
    votes_up: int
    votes_down: int
    paused: bool


def _left_at() -> Any:  # a SQL expression
    """When a reader stopped: unsubscribed_at, else (a bounce) the last status change. A reader
    who left and signed up again is pending with their old `confirmed_at`: gone too, until the
    new link is followed (which sets `confirmed_at` anew)."""
    status = col(Subscriber.status)
    gone = or_(
        status.in_(LEFT),
        and_(status == SubscriberStatus.pending, col(Subscriber.confirmed_at).is_not(None)),
    )
    return case((gone, func.coalesce(col(Subscriber.unsubscribed_at), col(Subscriber.updated_at))))


def weekly_growth(session: Session, now: datetime, weeks: int = 12) -> list[Week]:
    """The last `weeks` weeks (Monday to Monday, in `now`'s zone), oldest first, in one query.
    Erased readers are gone from every week: nothing of them is kept to count."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    joined_at, left_at = col(Subscriber.confirmed_at), _left_at()
    columns = []
    for start in starts:
        end = start + timedelta(weeks=1)
        columns += [
            func.count().filter(and_(joined_at < end, or_(left_at.is_(None), left_at >= end))),
            func.count().filter(and_(joined_at >= start, joined_at < end)),
            func.count().filter(and_(left_at >= start, left_at < end)),
        ]
    row = session.execute(sa_select(*columns).select_from(Subscriber)).one()
    return [Week(s, row[3 * i], row[3 * i + 1], row[3 * i + 2]) for i, s in enumerate(starts)]


def issue_summaries(session: Session, limit: int = 8) -> list[IssueSummary]:
    """The newest `limit` issues with their deliveries, the bounces and complaints reported
    for their messages (`bounces.reports`: hard, soft and policy count as bounced) and votes."""
    issues = session.exec(select(Issue).order_by(col(Issue.id).desc()).limit(limit)).all()
    counted = counts_by_issue(session)
    bounced = bounce_counts_by_issue(session)
    none = {s.value: 0 for s in DeliveryState}
    return [
        _summary(
            session, issue, counted.get(saved_id(issue), none), bounced.get(saved_id(issue)) or no_bounces()
        )
        for issue in issues
    ]


def _summary(session: Session, issue: Issue, counts: dict[str, int], bounces: dict[str, int]) -> IssueSummary:
    issue_id = saved_id(issue)
    votes = dict(
        session.exec(
            select(Vote.direction, func.count())
            .where(Vote.issue_id == issue_id)
            .group_by(col(Vote.direction))
        ).all()
    )
    return IssueSummary(
        id=issue_id,
        title=issue.title,
        period=issue.period,
        created_at=issue.created_at,
        counts=counts,
        bounced=sum(n for kind, n in bounces.items() if kind != BounceKind.complaint.value),
        complained=bounces[BounceKind.complaint.value],
        votes_up=votes.get(1, 0),
        votes_down=votes.get(-1, 0),
        paused=issue.paused_at is not None,
    )


def search_subscribers(
    session: Session, query: str = "", status: str | None = None, after_id: int = 0, limit: int = 50
) -> list[Subscriber]:
    """Subscribers whose address contains `query` (`address_contains`), by id, `limit` after
    `after_id`."""
    stmt = select(Subscriber).where(col(Subscriber.id) > after_id)
    if query.strip():
        stmt = stmt.where(address_contains(query))
    if status:
        stmt = stmt.where(Subscriber.status == SubscriberStatus(status))
    return list(session.exec(stmt.order_by(col(Subscriber.id)).limit(limit)).all())


def address_contains(query: str) -> ColumnElement[bool]:
    """Addresses that contain `query` (any case; `%` and `_` are plain characters). No address
    holds a control character, so a query with one matches nothing (PostgreSQL refuses a NUL in
    text outright, which was a 500)."""
    text = query.strip().lower()  # as `validation.email_key` stores it
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return false()
    return col(Subscriber.email_key).contains(text, autoescape=True)
