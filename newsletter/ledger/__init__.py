"""The delivery ledger: every statement on `Delivery` lives in this package.

This module holds the send path's statements; `reports.py` the read-only counts and history
that pages and commands show; `tables.py` the table handles both use.

One row per reader per issue, unique `(issue_id, subscriber_id)`. Its life: planned `pending`
(one INSERT … SELECT), claimed `sending` by exactly one batch (one UPDATE … RETURNING), then
`sent`, `skipped`, `failed` or `deferred` in its own transaction right after the SMTP answer.
Claims carry a heartbeat; rows whose worker went quiet are put back (`requeue_stale`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, Update, bindparam, literal, select, text, true, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from newsletter import pipelined
from newsletter.db import insert_ignore, rows_written, write_until_reachable
from newsletter.digests import get_or_create_issue
from newsletter.ledger.reports import (  # re-exported: the ledger is one place to import from
    counts_by_issue as counts_by_issue,
)
from newsletter.ledger.reports import (
    delivery_counts as delivery_counts,
)
from newsletter.ledger.reports import (
    delivery_of_message as delivery_of_message,
)
from newsletter.ledger.reports import (
    delivery_owner as delivery_owner,
)
from newsletter.ledger.reports import (
    load_subscribers as load_subscribers,
)
from newsletter.ledger.reports import (
    sent_at as sent_at,
)
from newsletter.ledger.reports import (
    sent_history as sent_history,
)
from newsletter.ledger.reports import (
    sent_papers as sent_papers,
)
from newsletter.ledger.reports import (
    stalled_issues as stalled_issues,
)
from newsletter.ledger.sweeps import (  # re-exported: the ledger is one place to import from
    expire_open as expire_open,
)
from newsletter.ledger.sweeps import (
    renew_open as renew_open,
)
from newsletter.ledger.sweeps import (
    requeue_refused as requeue_refused,
)
from newsletter.ledger.sweeps import (
    requeue_stale as requeue_stale,
)
from newsletter.ledger.tables import CLAIMABLE, DELIVERIES, ISSUES, SUBSCRIBERS
from newsletter.logs import event
from newsletter.models import (
    DeliveryState,
    Frequency,
    Issue,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

log = logging.getLogger("newsletter.ledger")
# A plan this large refreshes PostgreSQL's statistics of the ledger (see `plan_deliveries`).
ANALYZE_AFTER_ROWS = 1000
SENT_RECORD_SECONDS = 30  # how long to keep trying to record a 250 while the database is away


# ---- planning -------------------------------------------------------------------------------


def plan_deliveries(session: Session, issue: Issue, readers: ColumnElement[bool] | None = None) -> int:
    """One pending delivery per confirmed subscriber of the issue's frequency (and `readers`, a
    condition on `Subscriber`: the schedule's slot), in one statement.

    INSERT … SELECT keeps the subscriber list in the database (no rows in Python memory) and
    ON CONFLICT makes planning twice harmless. Returns how many rows were added.
    """
    table = DELIVERIES
    now = utcnow()
    rows = select(
        literal(issue.id),
        col(Subscriber.id),
        literal(DeliveryState.pending, table.c.state.type),
        literal(0),
        literal([], table.c.paper_ids.type),
        literal(now, table.c.due_since.type),
    ).where(
        col(Subscriber.status) == SubscriberStatus.confirmed,
        col(Subscriber.frequency) == issue.frequency,
        true() if readers is None else readers,
    )
    dialect = session.get_bind().dialect.name
    stmt = insert_ignore(table, dialect).from_select(
        ["issue_id", "subscriber_id", "state", "attempts", "paper_ids", "due_since"], rows
    )
    added = rows_written(session, stmt)
    if dialect == "postgresql" and added >= ANALYZE_AFTER_ROWS:
        # Claims and the dispatch look rows up by id. With statistics from before this plan
        # (autovacuum analyzes a minute or more later, or never where it is off), PostgreSQL
        # believes the issue has next to no pending rows and reads all of them through
        # ix_delivery_issue_state for every claim of 100: a send of N readers cost O(N²)
        # (200,000 readers: 40-140 ms a claim, PostgreSQL using 1.3 of the 2 cores).
        session.execute(text(f"ANALYZE {table.name}"))
    issue.planned_at = now
    session.add(issue)
    return max(added, 0)


def plan_issue(
    session: Session,
    frequency: Frequency = Frequency.weekly,
    now: datetime | None = None,
    readers: ColumnElement[bool] | None = None,
) -> tuple[Issue, int]:
    """Create (or find) this period's issue and plan its deliveries (to `readers` only, if
    given); returns (issue, new rows)."""
    now = now or utcnow()
    issue = get_or_create_issue(session, frequency, now)
    return issue, plan_deliveries(session, issue, readers)


def claimable_batches(engine: Engine, issue_id: int, size: int) -> Iterator[list[int]]:
    """Claimable delivery ids of an issue in id order, `size` at a time (keyset pagination)."""
    last = 0
    while True:
        with engine.connect() as conn:
            ids = list(conn.execute(claimable_after(issue_id, last, size)).scalars())
        if not ids:
            return
        last = ids[-1]
        yield ids


def claimable_after(issue_id: int, last: int, size: int) -> Select:
    """The next `size` claimable delivery ids of an issue after id `last`."""
    return (
        select(DELIVERIES.c.id)
        .where(
            DELIVERIES.c.issue_id.in_(_unpaused(issue_id)),
            DELIVERIES.c.state.in_(CLAIMABLE),
            DELIVERIES.c.id > last,
        )
        .order_by(DELIVERIES.c.id)
        .limit(size)
    )


# ---- claiming and finishing -----------------------------------------------------------------


def _unpaused(issue_id: int) -> Select:
    """The issue's id, unless it is paused (then nothing)."""
    return select(ISSUES.c.id).where(ISSUES.c.id == issue_id, ISSUES.c.paused_at.is_(None))


def claim(conn: Connection, issue_id: int, ids: list[int], owner: str) -> list[tuple[int, int]]:
    """Atomically take the claimable rows among `ids` (none if the issue is paused); returns
    (delivery id, subscriber id)."""
    return sorted((row[0], row[1]) for row in conn.execute(claim_statement(issue_id, ids, owner)))


def claim_statement(issue_id: int, ids: list[int], owner: str) -> Update:
    """The UPDATE … RETURNING that `claim` runs."""
    return (
        update(DELIVERIES)
        .where(
            DELIVERIES.c.id.in_(ids),
            DELIVERIES.c.issue_id.in_(_unpaused(issue_id)),
            DELIVERIES.c.state.in_(CLAIMABLE),
        )
        .values(
            state=DeliveryState.sending,
            claimed_at=utcnow(),
            claimed_by=owner,
            attempts=DELIVERIES.c.attempts + 1,
        )
        .returning(DELIVERIES.c.id, DELIVERIES.c.subscriber_id)
    )


def finish(conn: Connection, delivery_id: int, owner: str, state: DeliveryState, **values: Any) -> None:
    """Record the outcome of one claimed row, in its own transaction."""
    conn.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.claimed_by == owner)
        .values(state=state, **values)
    )
    conn.commit()


def _held(ids: list[int], owner: str) -> Update:
    """An UPDATE of the rows among `ids` that `owner` still holds (claimed, not yet finished)."""
    return update(DELIVERIES).where(
        DELIVERIES.c.id.in_(ids),
        DELIVERIES.c.claimed_by == owner,
        DELIVERIES.c.state == DeliveryState.sending,
    )


def release(conn: Connection, ids: list[int], owner: str, error: str) -> None:
    """Give unsent claimed rows back (deferred) so a retry or another worker picks them up."""
    if ids:
        conn.execute(_held(ids, owner).values(state=DeliveryState.deferred, error=error[:1000]))
        conn.commit()


def heartbeat(conn: Connection, ids: list[int], owner: str) -> set[int]:
    """Refresh our claims; returns the ids still ours (a claim swept as stale is not)."""
    if not ids:
        return set()
    held = set(
        conn.execute(_held(ids, owner).values(claimed_at=utcnow()).returning(DELIVERIES.c.id)).scalars()
    )
    conn.commit()
    return held


# ---- reading --------------------------------------------------------------------------------


class RowCheck(NamedTuple):
    """A claimed row's situation right before its message goes out."""

    status: SubscriberStatus  # the reader's, now
    paused: bool  # the issue's
    refusals: int  # the issue's messages refused in a row (Issue.send_errors)


_CHECK_ROW = (
    select(SUBSCRIBERS.c.status, ISSUES.c.paused_at.is_not(None), ISSUES.c.send_errors)
    .join_from(DELIVERIES, SUBSCRIBERS, SUBSCRIBERS.c.id == DELIVERIES.c.subscriber_id)
    .join(ISSUES, ISSUES.c.id == DELIVERIES.c.issue_id)
    .where(
        DELIVERIES.c.id == bindparam("delivery_id"),
        DELIVERIES.c.claimed_by == bindparam("owner"),
        DELIVERIES.c.state == DeliveryState.sending,
    )
)


def check_row(conn: Connection, delivery_id: int, owner: str) -> RowCheck | None:
    """The reader's status and the issue's pause right now, if `owner` still holds the row;
    None if the row is gone (the reader was erased) or no longer ours (swept as stale). Three
    primary-key lookups."""
    row = conn.execute(_CHECK_ROW, {"delivery_id": delivery_id, "owner": owner}).first()
    conn.commit()
    return RowCheck(*row) if row else None


# ---- recording a 250 ------------------------------------------------------------------------


def record_sent(conn: Connection, delivery_id: int, owner: str, **values: Any) -> None:
    """Mark a row sent after the server's 250. If the database is unreachable just then, keep
    trying for up to SENT_RECORD_SECONDS: giving up means the reader gets this digest twice once
    the claim is recovered."""
    write_until_reachable(
        conn,
        lambda: finish(conn, delivery_id, owner, DeliveryState.sent, **values),
        SENT_RECORD_SECONDS,
        lambda: event(log, "delivery.record_retry", logging.WARNING, delivery_id=delivery_id),
    )


class SentRecorder:
    """Marks rows sent in one round trip that overlaps rendering the next message, and reads
    the next reader's status in that same round trip.

    On PostgreSQL (psycopg, autocommit) the row's UPDATE is sent right after the 250 as a
    statement of its own, i.e. its own transaction, without waiting for the answer; `wait()`
    collects the answer (the commit, fsync included) and runs before the connection is used for
    anything else and before the next message is handed to SMTP. So a row is committed as sent
    before the next message goes out, exactly as with `record_sent` (a killed worker repeats at
    most one message), but the commit no longer adds to the time per message. Any other
    database, and any error, goes through `record_sent` and its retries instead.

    The same statement reads the batch's next row (`check_row`: the reader's status, the issue's
    pause), so checking it right before that message costs no round trip of its own: the answer
    is at most one render (about a millisecond) old when the message goes out. Without such an
    answer (the first row, a row after a skip or failure, SQLite) `check_row` asks the database.

    `SQL` is `finish(..., DeliveryState.sent, ...)` and `_CHECK_ROW` written out for libpq's
    pipelined call, prepared once per connection; the test suite holds them equal.
    """

    NAME = b"ledger_sent_and_check"
    SQL = (
        f"WITH sent AS (UPDATE {DELIVERIES.name} SET state = 'sent', sent_at = $1, smtp_code = 250,"
        " message_id = $2, paper_ids = $3, error = NULL WHERE id = $4 AND claimed_by = $5)"
        f" SELECT s.status, i.paused_at IS NOT NULL, i.send_errors FROM {DELIVERIES.name} d"
        f" JOIN {SUBSCRIBERS.name} s ON s.id = d.subscriber_id JOIN {ISSUES.name} i ON i.id = d.issue_id"
        " WHERE d.id = $6 AND d.claimed_by = $5 AND d.state = 'sending'"
    ).encode()

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pending: tuple[Any, int, str, int | None, dict[str, Any]] | None = None  # in flight
        self.known: tuple[int, RowCheck | None] | None = None  # (next row, its check)

    def record_sent(self, delivery_id: int, owner: str, next_id: int | None = None, **values: Any) -> None:
        """Mark a row sent; with `next_id`, check that row on the way."""
        self.wait()
        pgconn = pipelined.idle_pgconn(self.conn)
        if pgconn is not None:
            params = [
                values["sent_at"].isoformat().encode(),
                values["message_id"].encode(),
                json.dumps(values["paper_ids"]).encode(),
                str(delivery_id).encode(),
                owner.encode(),
                str(next_id or 0).encode(),
            ]
            try:
                pipelined.send(self.conn, pgconn, self.NAME, self.SQL, params)
                self.pending = (pgconn, delivery_id, owner, next_id, values)
                return
            except Exception:  # noqa: BLE001 - the connection broke: the plain path
                self.conn.invalidate()
        record_sent(self.conn, delivery_id, owner, **values)

    def wait(self) -> None:
        """Collect the UPDATE in flight, if any; if it did not succeed, record it the plain way."""
        if self.pending is None:
            return
        pgconn, delivery_id, owner, next_id, values = self.pending
        self.pending = None
        try:
            checks = self._collect(pgconn)
            if checks is not None:
                if next_id is not None:
                    self.known = (next_id, checks[0] if checks else None)
                return
            pipelined.forget(self.conn, self.NAME)
        except Exception:  # noqa: BLE001 - the connection broke: invalidate, then the plain path
            self.conn.invalidate()
        record_sent(self.conn, delivery_id, owner, **values)

    def check_row(self, delivery_id: int, owner: str) -> RowCheck | None:
        """`check_row(conn, …)` for the row about to be sent, from the last round trip if it
        read this row, else from the database."""
        self.wait()
        known, self.known = self.known, None
        if known is not None and known[0] == delivery_id:
            return known[1]
        return check_row(self.conn, delivery_id, owner)

    @staticmethod
    def _collect(pgconn: Any) -> list[RowCheck] | None:
        """The next row's check the statement read (none if the row is not ours), or None if
        the statement did not succeed."""
        rows = pipelined.collect(pgconn, SENT_RECORD_SECONDS)
        if rows is None:
            return None
        return [RowCheck(SubscriberStatus(s.decode()), paused == b"t", int(n)) for s, paused, n in rows]


def note_bounce(session: Session, delivery_id: int, why: str) -> None:
    """Write on a delivery that it bounced after the relay's 250; its state stays `sent` (the
    relay did take it), its `error` says what came back."""
    session.connection().execute(
        update(DELIVERIES).where(DELIVERIES.c.id == delivery_id).values(error=why[:1000])
    )
