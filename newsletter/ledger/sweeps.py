"""The recovery sweep's statements on the ledger: claims gone stale put back, refused rows put
back on resume, and rows due for too long given up (or their window started again)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from newsletter.ledger.tables import CLAIMABLE, DELIVERIES, ISSUES, SUBSCRIBERS
from newsletter.models import DeliveryState, SubscriberStatus, utcnow


def _move(conn: Connection, state: DeliveryState, error: str, *where: Any) -> list[int]:
    """Set `state` and `error` on the rows matching `where`; returns each row's issue id."""
    rows = conn.execute(
        update(DELIVERIES).where(*where).values(state=state, error=error).returning(DELIVERIES.c.issue_id)
    ).all()
    conn.commit()
    return [r[0] for r in rows]


def requeue_stale(conn: Connection, cutoff: datetime) -> list[int]:
    """Put back claims whose heartbeat is older than `cutoff`; returns each row's issue id."""
    stale = (DELIVERIES.c.state == DeliveryState.sending, DELIVERIES.c.claimed_at < cutoff)
    return _move(conn, DeliveryState.deferred, "claim went stale (worker lost)", *stale)


def requeue_refused(conn: Connection, issue_id: int) -> int:
    """Put back the issue's rows that a relay refused with a 5xx while their reader stayed
    subscribed (refusals of the message, not of the address); returns how many."""
    confirmed = select(SUBSCRIBERS.c.id).where(SUBSCRIBERS.c.status == SubscriberStatus.confirmed)
    refused = (DELIVERIES.c.state == DeliveryState.failed, DELIVERIES.c.smtp_code >= 500)
    mine = (DELIVERIES.c.issue_id == issue_id, DELIVERIES.c.subscriber_id.in_(confirmed))
    return len(_move(conn, DeliveryState.deferred, "refused, put back on resume", *refused, *mine))


def expire_open(conn: Connection, due_before: datetime, error: str) -> list[int]:
    """Give up (failed, with `error`) the rows still to send that have been due since before
    `due_before`, unless their issue is paused (a resume starts their window again); returns
    each row's issue id. A row is due from its own planning, on its reader's day: a weekly
    issue made on Monday is still young for its Friday readers."""
    # A row is never due before its issue was made: the issue filter walks ix_delivery_issue_state.
    older = select(ISSUES.c.id).where(ISSUES.c.created_at < due_before, ISSUES.c.paused_at.is_(None))
    return _move(
        conn,
        DeliveryState.failed,
        error,
        DELIVERIES.c.state.in_(CLAIMABLE),
        DELIVERIES.c.issue_id.in_(older),
        DELIVERIES.c.due_since < due_before,
    )


def renew_open(conn: Connection, issue_id: int) -> None:
    """Start the retry window of an issue's rows still to send again (on resume)."""
    where = (DELIVERIES.c.issue_id == issue_id, DELIVERIES.c.state.in_(CLAIMABLE))
    conn.execute(update(DELIVERIES).where(*where).values(due_since=utcnow()))
    conn.commit()
