"""The delivery ledger: every statement on `Delivery` lives here.

One row per reader per issue, unique `(issue_id, subscriber_id)`. Its life: planned `pending`
(one INSERT … SELECT), claimed `sending` by exactly one batch (one UPDATE … RETURNING), then
`sent`, `skipped`, `failed` or `deferred` in its own transaction right after the SMTP answer.
Claims carry a heartbeat; rows whose worker went quiet are put back (`requeue_stale`).
"""

from __future__ import annotations

import json
import logging
import select as io_select
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from psycopg import pq
from sqlalchemy import Update, case, func, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from newsletter.db import insert_ignore
from newsletter.digests import get_or_create_issue
from newsletter.logs import event
from newsletter.models import (
    Delivery,
    DeliveryState,
    Frequency,
    Issue,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

log = logging.getLogger("newsletter.ledger")
DELIVERIES = Delivery.__table__
SUBSCRIBERS = Subscriber.__table__
CLAIMABLE = (DeliveryState.pending, DeliveryState.deferred)
SENT_RECORD_SECONDS = 30  # how long to keep trying to record a 250 while the database is away


# ---- planning -------------------------------------------------------------------------------


def plan_deliveries(session: Session, issue: Issue) -> int:
    """One pending delivery per confirmed subscriber of the issue's frequency, in one statement.

    INSERT … SELECT keeps the subscriber list in the database (no rows in Python memory) and
    ON CONFLICT makes planning twice harmless. Returns how many rows were added.
    """
    table = DELIVERIES
    rows = select(
        literal(issue.id),
        Subscriber.id,
        literal(DeliveryState.pending, table.c.state.type),
        literal(0),
        literal([], table.c.paper_ids.type),
    ).where(Subscriber.status == SubscriberStatus.confirmed, Subscriber.frequency == issue.frequency)
    stmt = insert_ignore(table, session.get_bind().dialect.name).from_select(
        ["issue_id", "subscriber_id", "state", "attempts", "paper_ids"], rows
    )
    added = session.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount
    issue.planned_at = utcnow()
    session.add(issue)
    return max(added, 0)


def plan_issue(
    session: Session, frequency: Frequency = Frequency.weekly, now: datetime | None = None
) -> tuple[Issue, int]:
    """Create (or find) this period's issue and plan its deliveries; returns (issue, new rows)."""
    now = now or utcnow()
    issue = get_or_create_issue(session, frequency, now)
    return issue, plan_deliveries(session, issue)


def claimable_batches(engine: Engine, issue_id: int, size: int) -> Iterator[list[int]]:
    """Claimable delivery ids of an issue in id order, `size` at a time (keyset pagination)."""
    last = 0
    while True:
        with engine.connect() as conn:
            ids = list(
                conn.execute(
                    select(DELIVERIES.c.id)
                    .where(
                        DELIVERIES.c.issue_id == issue_id,
                        DELIVERIES.c.state.in_(CLAIMABLE),
                        DELIVERIES.c.id > last,
                    )
                    .order_by(DELIVERIES.c.id)
                    .limit(size)
                ).scalars()
            )
        if not ids:
            return
        last = ids[-1]
        yield ids


# ---- claiming and finishing -----------------------------------------------------------------


def claim(conn: Connection, issue_id: int, ids: list[int], owner: str) -> list[tuple[int, int]]:
    """Atomically take the claimable rows among `ids`; returns (delivery id, subscriber id)."""
    stmt = (
        update(DELIVERIES)
        .where(DELIVERIES.c.id.in_(ids), DELIVERIES.c.issue_id == issue_id, DELIVERIES.c.state.in_(CLAIMABLE))
        .values(
            state=DeliveryState.sending,
            claimed_at=utcnow(),
            claimed_by=owner,
            attempts=DELIVERIES.c.attempts + 1,
        )
        .returning(DELIVERIES.c.id, DELIVERIES.c.subscriber_id)
    )
    return sorted((row[0], row[1]) for row in conn.execute(stmt))


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


def requeue_stale(conn: Connection, cutoff: datetime) -> list[int]:
    """Put back claims whose heartbeat is older than `cutoff`; returns each row's issue id."""
    rows = conn.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.state == DeliveryState.sending, DELIVERIES.c.claimed_at < cutoff)
        .values(state=DeliveryState.deferred, error="claim went stale (worker lost)")
        .returning(DELIVERIES.c.issue_id)
    ).all()
    conn.commit()
    return [r[0] for r in rows]


# ---- reading --------------------------------------------------------------------------------


def load_subscribers(conn: Connection, ids: list[int]) -> dict[int, Subscriber]:
    """The subscribers of a batch, by id (a row erased since planning is simply absent)."""
    rows = conn.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.id.in_(ids))).mappings()
    return {row["id"]: Subscriber.model_validate(dict(row)) for row in rows}


def sent_at(session: Session, issue_id: int, subscriber_id: int) -> datetime | None:
    """When the reader's digest of this issue was sent (None: not sent, or no such row)."""
    return session.execute(
        select(DELIVERIES.c.sent_at).where(
            DELIVERIES.c.issue_id == issue_id, DELIVERIES.c.subscriber_id == subscriber_id
        )
    ).scalar()


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


def stalled_issues(conn: Connection, quiet_since: datetime, created_since: datetime) -> set[int]:
    """Issues created since `created_since` with claimable rows and no claim since `quiet_since`."""
    issues = Issue.__table__
    open_rows = func.sum(case((DELIVERIES.c.state.in_(CLAIMABLE), 1), else_=0))
    last_activity = func.coalesce(func.max(DELIVERIES.c.claimed_at), issues.c.planned_at, issues.c.created_at)
    stmt = (
        select(DELIVERIES.c.issue_id)
        .join(issues, issues.c.id == DELIVERIES.c.issue_id)
        .where(issues.c.created_at >= created_since)
        .group_by(DELIVERIES.c.issue_id, issues.c.planned_at, issues.c.created_at)
        .having(open_rows > 0, last_activity < quiet_since)
    )
    found = set(conn.execute(stmt).scalars())
    conn.commit()
    return found


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


# ---- recording a 250 ------------------------------------------------------------------------


def record_sent(conn: Connection, delivery_id: int, owner: str, **values: Any) -> None:
    """Mark a row sent after the server's 250. If the database is unreachable just then, keep
    trying (the connection reconnects after a rollback) for up to SENT_RECORD_SECONDS: giving
    up means the reader gets this digest twice once the claim is recovered."""
    deadline = time.monotonic() + SENT_RECORD_SECONDS
    delay = 0.2
    while True:
        try:
            finish(conn, delivery_id, owner, DeliveryState.sent, **values)
            return
        except DBAPIError:
            conn.rollback()
            if time.monotonic() > deadline:
                raise
            event(log, "delivery.record_retry", logging.WARNING, delivery_id=delivery_id)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class SentRecorder:
    """Marks rows sent in one round trip that overlaps rendering the next message.

    On PostgreSQL (psycopg, autocommit) the row's UPDATE is sent right after the 250 as a
    statement of its own, i.e. its own transaction, without waiting for the answer; `wait()`
    collects the answer (the commit, fsync included) and runs before the connection is used for
    anything else and before the next message is handed to SMTP. So a row is committed as sent
    before the next message goes out, exactly as with `record_sent` (a killed worker repeats at
    most one message), but the commit no longer adds to the time per message. Any other
    database, and any error, goes through `record_sent` and its retries instead.

    `SQL` is `finish(..., DeliveryState.sent, ...)` written out for libpq's pipelined call; the
    test suite holds the two equal (same row afterwards).
    """

    SQL = (
        f"UPDATE {DELIVERIES.name} SET state = 'sent', sent_at = $1, smtp_code = 250, message_id = $2,"
        " paper_ids = $3, error = NULL WHERE id = $4 AND claimed_by = $5"
    ).encode()

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pending: tuple[Any, int, str, dict[str, Any]] | None = None  # the UPDATE in flight

    def _pgconn(self) -> Any:
        """libpq's connection under `conn`, if it is psycopg's, autocommit and idle."""
        try:
            driver = self.conn.connection.driver_connection
            pgconn = driver.pgconn  # type: ignore[union-attr]
            if driver.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE:  # type: ignore[union-attr]
                return pgconn
        except Exception:  # noqa: BLE001 - not psycopg, or not usable: the plain path
            pass
        return None

    def record_sent(self, delivery_id: int, owner: str, **values: Any) -> None:
        self.wait()
        pgconn = self._pgconn()
        if pgconn is not None:
            params = [
                values["sent_at"].isoformat().encode(),
                values["message_id"].encode(),
                json.dumps(values["paper_ids"]).encode(),
                str(delivery_id).encode(),
                owner.encode(),
            ]
            try:
                pgconn.send_query_params(self.SQL, params)
                while pgconn.flush():  # 1: not all of it left yet (non-blocking socket)
                    io_select.select([], [pgconn.socket], [], 1.0)
                self.pending = (pgconn, delivery_id, owner, values)
                return
            except Exception:  # noqa: BLE001 - the connection broke: the plain path
                self.conn.invalidate()
        record_sent(self.conn, delivery_id, owner, **values)

    def wait(self) -> None:
        """Collect the UPDATE in flight, if any; if it did not succeed, record it the plain way."""
        if self.pending is None:
            return
        pgconn, delivery_id, owner, values = self.pending
        self.pending = None
        try:
            if self._collect(pgconn):
                return
        except Exception:  # noqa: BLE001 - the connection broke: invalidate, then the plain path
            self.conn.invalidate()
        record_sent(self.conn, delivery_id, owner, **values)

    @staticmethod
    def _collect(pgconn: Any) -> bool:
        deadline = time.monotonic() + SENT_RECORD_SECONDS
        results = []
        while True:
            pgconn.consume_input()
            if pgconn.is_busy():
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer to the sent UPDATE")
                io_select.select([pgconn.socket], [], [], 1.0)
                continue
            res = pgconn.get_result()
            if res is None:
                break
            results.append(res)
        return [r.status for r in results] == [pq.ExecStatus.COMMAND_OK]
