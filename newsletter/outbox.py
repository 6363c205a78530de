"""The journey-email outbox: every statement on `JourneyEmail` lives here.

A confirmation, welcome or "already subscribed" email is a row written in the same transaction
as the signup or confirmation that calls for it, so it is exactly as durable as that change: a
broker that loses its queue loses a nudge, never an email. The row's life is a digest
delivery's (`ledger.py`): written `pending`; claimed `sending` by exactly one job (one
UPDATE … RETURNING); then `sent` right after the 250, `failed` on a refusal or when its tries
run out, `skipped` when it no longer makes sense, or `deferred` (given back) after a transient
error or an interruption.

What differs from the ledger, and why: a job claims one row by id (no batches, so no
heartbeat: one message takes seconds); rows carry `next_attempt_at`, the clock beat's sweep
reads, because there is no issue to dispatch again; and a stale claim counts against the
row's tries, so an email that kills its worker every time ends `failed` instead of looping.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from newsletter.db import insert_ignore, write_until_reachable
from newsletter.logs import event
from newsletter.models import DeliveryState, JourneyEmail, table_of, utcnow

log = logging.getLogger("newsletter.outbox")
EMAILS = table_of(JourneyEmail)
CLAIMABLE = (DeliveryState.pending, DeliveryState.deferred)
UNSENT = (*CLAIMABLE, DeliveryState.sending)
SENT_RECORD_SECONDS = 30  # as in the ledger: how long to keep recording a 250 while the database is away


class Claimed(NamedTuple):
    """What a job needs of the row it claimed."""

    subscriber_id: int
    kind: str
    created_at: datetime
    attempts: int


def add_email(conn: Connection, subscriber_id: int, kind: str, first_look: datetime) -> int:
    """The id of the unsent `kind` email for this subscriber: a new pending row, or the one
    already waiting (at most one is unsent, by a partial unique index). `first_look` is when
    the sweep may queue it again if the job queued after commit has not sent it by then."""
    conn.execute(
        insert_ignore(EMAILS, conn.dialect.name).values(
            subscriber_id=subscriber_id,
            kind=kind,
            state=DeliveryState.pending,
            attempts=0,
            created_at=utcnow(),
            next_attempt_at=first_look,
        )
    )
    return conn.execute(
        select(EMAILS.c.id).where(
            EMAILS.c.subscriber_id == subscriber_id, EMAILS.c.kind == kind, EMAILS.c.state.in_(UNSENT)
        )
    ).scalar_one()


def claim(conn: Connection, email_id: int, owner: str) -> Claimed | None:
    """Atomically take the row if it is still to be sent (pending or deferred); None otherwise
    (sent, finished, in another job's hands, or erased)."""
    row = conn.execute(
        update(EMAILS)
        .where(EMAILS.c.id == email_id, EMAILS.c.state.in_(CLAIMABLE))
        .values(
            state=DeliveryState.sending,
            claimed_at=utcnow(),
            claimed_by=owner,
            attempts=EMAILS.c.attempts + 1,
        )
        .returning(EMAILS.c.subscriber_id, EMAILS.c.kind, EMAILS.c.created_at, EMAILS.c.attempts)
    ).first()
    conn.commit()
    return Claimed(*row) if row is not None else None


def finish(conn: Connection, email_id: int, owner: str, state: DeliveryState, **values: Any) -> None:
    """Record the outcome of a claimed row, in its own transaction."""
    conn.execute(
        update(EMAILS)
        .where(EMAILS.c.id == email_id, EMAILS.c.claimed_by == owner)
        .values(state=state, **values)
    )
    conn.commit()


def record_sent(conn: Connection, email_id: int, owner: str, **values: Any) -> None:
    """Mark a row sent after the server's 250, retrying for up to SENT_RECORD_SECONDS while the
    database is unreachable: giving up means the stale-claim sweep sends this email again."""
    write_until_reachable(
        conn,
        lambda: finish(conn, email_id, owner, DeliveryState.sent, **values),
        SENT_RECORD_SECONDS,
        lambda: event(log, "journey.record_retry", logging.WARNING, email_id=email_id),
    )


def requeue_stale(
    conn: Connection, cutoff: datetime, max_attempts: int, now: datetime
) -> list[tuple[int, DeliveryState]]:
    """Put back claims older than `cutoff` (their job died): failed once they used
    `max_attempts` tries, else deferred and due at `now`. Returns (id, new state) of each."""
    stale = (EMAILS.c.state == DeliveryState.sending, EMAILS.c.claimed_at < cutoff)
    error = "claim went stale (worker lost)"
    failed = conn.execute(
        update(EMAILS)
        .where(*stale, EMAILS.c.attempts >= max_attempts)
        .values(state=DeliveryState.failed, error=f"{error}; {max_attempts} tries used")
        .returning(EMAILS.c.id)
    ).scalars()
    found = [(i, DeliveryState.failed) for i in failed]
    deferred = conn.execute(
        update(EMAILS)
        .where(*stale)
        .values(state=DeliveryState.deferred, error=error, next_attempt_at=now)
        .returning(EMAILS.c.id)
    ).scalars()
    found += [(i, DeliveryState.deferred) for i in deferred]
    conn.commit()
    return found


def take_due(conn: Connection, now: datetime, next_look: datetime) -> list[int]:
    """Rows still to be sent whose `next_attempt_at` has come, in id order; their clock moves
    to `next_look`, so the next sweep does not queue them again while this job waits."""
    ids = conn.execute(
        update(EMAILS)
        .where(EMAILS.c.state.in_(CLAIMABLE), EMAILS.c.next_attempt_at <= now)
        .values(next_attempt_at=next_look)
        .returning(EMAILS.c.id)
    ).scalars()
    found = sorted(ids)
    conn.commit()
    return found
