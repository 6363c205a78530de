"""Read-only statements on the ledger: what pages, commands and votes show of it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, func, or_, select, true
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from newsletter.ledger.tables import CLAIMABLE, DELIVERIES, ISSUES, SUBSCRIBERS
from newsletter.models import DeliveryState, Frequency, Issue, Subscriber


def sent_at(session: Session, issue_id: int, subscriber_id: int) -> datetime | None:
    """When the reader's digest of this issue was sent (None: not sent, or no such row)."""
    return session.execute(
        select(DELIVERIES.c.sent_at).where(
            DELIVERIES.c.issue_id == issue_id, DELIVERIES.c.subscriber_id == subscriber_id
        )
    ).scalar()


def delivery_counts(engine: Engine, issue_id: int) -> dict[str, int]:
    """Rows of an issue by state, every state present (0 where none)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(DELIVERIES.c.state, func.count())
            .where(DELIVERIES.c.issue_id == issue_id)
            .group_by(DELIVERIES.c.state)
        ).all()
    counts = {s.value: 0 for s in DeliveryState}
    counts.update({(s.value if hasattr(s, "value") else str(s)): n for s, n in rows})
    return counts


def archived_issues(session: Session, limit: int, before: int | None = None) -> list[Issue]:
    """The newest `limit` issues of the archive (older than issue `before`, if given): every
    weekly edition (the list's own, planned each week even before anyone subscribes) and the
    daily ones planned for at least one reader (a day nobody reads daily has no edition)."""
    planned = exists().where(DELIVERIES.c.issue_id == ISSUES.c.id)
    shown = or_(ISSUES.c.frequency == Frequency.weekly, planned)
    older = ISSUES.c.id < before if before is not None else true()
    stmt = select(Issue).where(shown, older).order_by(ISSUES.c.id.desc()).limit(limit)
    return list(session.exec(stmt).scalars())  # type: ignore[call-overload]


def counts_by_issue(session: Session) -> dict[int, dict[str, int]]:
    """Every issue's rows by state, every state present (0 where none), in one query; an issue
    without rows is absent."""
    rows = session.execute(
        select(DELIVERIES.c.issue_id, DELIVERIES.c.state, func.count()).group_by(
            DELIVERIES.c.issue_id, DELIVERIES.c.state
        )
    )
    counts: dict[int, dict[str, int]] = {}
    for issue_id, state, n in rows:
        counts.setdefault(issue_id, {s.value: 0 for s in DeliveryState})[DeliveryState(state).value] = n
    return counts


def sent_papers(session: Session, issue_id: int, sub: Subscriber) -> list[int] | None:
    """The papers `sub` was sent in an issue, in the order sent; None if it was not sent."""
    return session.execute(
        select(DELIVERIES.c.paper_ids).where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.subscriber_id == sub.id,
            DELIVERIES.c.state == DeliveryState.sent,
        )
    ).scalar()


def load_subscribers(conn: Connection, ids: list[int]) -> dict[int, Subscriber]:
    """The subscribers of a batch, by id (a row erased since planning is simply absent)."""
    rows = conn.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.id.in_(ids))).mappings()
    # The row comes typed by the table's own columns (enums, JSON, aware datetimes): validating
    # it again cost 0.15-0.25 ms a reader, 10x constructing it.
    return {row["id"]: Subscriber.model_construct(**row) for row in rows}


def sent_history(conn: Connection, subscriber_ids: list[int], issue_id: int) -> dict[int, set[int]]:
    """Papers each subscriber already received in earlier issues (never send one twice)."""
    history: dict[int, set[int]] = {sid: set() for sid in subscriber_ids}
    rows = conn.execute(
        select(DELIVERIES.c.subscriber_id, DELIVERIES.c.paper_ids).where(
            DELIVERIES.c.subscriber_id.in_(subscriber_ids),
            DELIVERIES.c.state == DeliveryState.sent,
            DELIVERIES.c.issue_id != issue_id,
        )
    )
    for sid, paper_ids in rows:
        history[sid].update(paper_ids or ())
    return history


def stalled_issues(conn: Connection, quiet_since: datetime, due_since: datetime) -> set[int]:
    """Unpaused issues with rows still to send that became due since `due_since` (however old
    the issue: a weekly issue plans its Friday readers on Friday), and no claim since
    `quiet_since`."""
    row = DELIVERIES.alias("open_row")
    still_open = (
        select(row.c.id)
        .where(row.c.issue_id == ISSUES.c.id, row.c.state.in_(CLAIMABLE), row.c.due_since >= due_since)
        .correlate(ISSUES)
        .exists()
    )
    last_activity = func.coalesce(func.max(DELIVERIES.c.claimed_at), ISSUES.c.planned_at, ISSUES.c.created_at)
    stmt = (
        select(ISSUES.c.id)
        .join(DELIVERIES, DELIVERIES.c.issue_id == ISSUES.c.id)
        .where(ISSUES.c.paused_at.is_(None), still_open)
        .group_by(ISSUES.c.id, ISSUES.c.planned_at, ISSUES.c.created_at)
        .having(last_activity < quiet_since)
    )
    found = set(conn.execute(stmt).scalars())
    conn.commit()
    return found


def delivery_owner(session: Session, delivery_id: int) -> tuple[int, int] | None:
    """(issue id, subscriber id) of a delivery row, or None if there is no such row."""
    row = session.connection().execute(
        select(DELIVERIES.c.issue_id, DELIVERIES.c.subscriber_id).where(DELIVERIES.c.id == delivery_id)
    )
    found = row.first()
    return (found[0], found[1]) if found is not None else None


def delivery_of_message(session: Session, subscriber_id: int, message_id: str) -> tuple[int, int] | None:
    """(delivery id, issue id) of the reader's delivery that went out with `message_id` (with or
    without its angle brackets); found through the reader's own rows (ix_delivery_subscriber_id)."""
    bare = message_id.strip().strip("<>")
    if not bare:
        return None
    row = (
        session.connection()
        .execute(
            select(DELIVERIES.c.id, DELIVERIES.c.issue_id).where(
                DELIVERIES.c.subscriber_id == subscriber_id, DELIVERIES.c.message_id.in_((f"<{bare}>", bare))
            )
        )
        .first()
    )
    return (row[0], row[1]) if row is not None else None
