"""Sending an issue: batches over the ledger, an atomic claim before SMTP, sent right after 250.

Guarantees (see README, "Delivery guarantees"):
- a delivery row is claimed (pending/deferred -> sending) in one UPDATE … RETURNING, so two
  workers holding the same batch never both send it;
- it is marked sent in its own short transaction right after the server's 250, so a crash
  repeats at most the one message in flight;
- the subscriber is re-checked at send time (unsubscribed since planning: skipped);
- claims whose worker died are found by their stale heartbeat and put back automatically.
"""

from __future__ import annotations

import json
import logging
import select as io_select
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from newsletter import jobs
from newsletter.config import Settings, get_settings
from newsletter.db import get_engine, session_scope
from newsletter.digests import DigestRenderer, plan_issue, renderer_for
from newsletter.logs import event
from newsletter.mail.message import Envelope, new_message_id
from newsletter.mail.senders import PermanentSendError, TransientSendError, open_sender
from newsletter.mail.transactional import finish_message, list_headers
from newsletter.models import (
    Delivery,
    DeliveryState,
    Frequency,
    Issue,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

log = logging.getLogger("newsletter.delivery")
D = Delivery.__table__
S = Subscriber.__table__
HEARTBEAT_SECONDS = 10  # at most; never more than a third of settings.stale_claim_seconds
SENT_RECORD_SECONDS = 30  # how long to keep trying to record a 250 while the database is away
CLAIMABLE = (DeliveryState.pending, DeliveryState.deferred)


# ---- the ledger -----------------------------------------------------------------------------


def claim(conn: Connection, issue_id: int, ids: list[int], owner: str) -> list[tuple[int, int]]:
    """Atomically take the claimable rows among `ids`; returns (delivery id, subscriber id)."""
    stmt = (
        update(D)
        .where(D.c.id.in_(ids), D.c.issue_id == issue_id, D.c.state.in_(CLAIMABLE))
        .values(state=DeliveryState.sending, claimed_at=utcnow(), claimed_by=owner, attempts=D.c.attempts + 1)
        .returning(D.c.id, D.c.subscriber_id)
    )
    return sorted((row[0], row[1]) for row in conn.execute(stmt))


def finish(conn: Connection, delivery_id: int, owner: str, state: DeliveryState, **values) -> None:
    """Record the outcome of one claimed row, in its own transaction."""
    conn.execute(
        update(D).where(D.c.id == delivery_id, D.c.claimed_by == owner).values(state=state, **values)
    )
    conn.commit()


def release(conn: Connection, ids: list[int], owner: str, error: str) -> None:
    """Give unsent claimed rows back (deferred) so a retry or another worker picks them up."""
    if ids:
        conn.execute(
            update(D)
            .where(D.c.id.in_(ids), D.c.claimed_by == owner, D.c.state == DeliveryState.sending)
            .values(state=DeliveryState.deferred, error=error[:1000])
        )
        conn.commit()


def heartbeat(conn: Connection, ids: list[int], owner: str) -> set[int]:
    """Refresh our claims; returns the ids still ours (a claim swept as stale is not)."""
    if not ids:
        return set()
    held = set(
        conn.execute(
            update(D)
            .where(D.c.id.in_(ids), D.c.claimed_by == owner, D.c.state == DeliveryState.sending)
            .values(claimed_at=utcnow())
            .returning(D.c.id)
        ).scalars()
    )
    conn.commit()
    return held


def sent_history(conn: Connection, subscriber_ids: list[int], issue_id: int) -> dict[int, set[int]]:
    """Papers each subscriber already received in earlier issues (never send one twice)."""
    history: dict[int, set[int]] = {sid: set() for sid in subscriber_ids}
    rows = conn.execute(
        select(D.c.subscriber_id, D.c.paper_ids).where(
            D.c.subscriber_id.in_(subscriber_ids), D.c.state == DeliveryState.sent, D.c.issue_id != issue_id
        )
    )
    for sid, paper_ids in rows:
        history[sid].update(paper_ids or ())
    return history


def digest_message(
    settings: Settings, renderer: DigestRenderer, sub: Subscriber, exclude: set[int]
) -> tuple[bytes, str, list[int]] | None:
    """The finished message for one reader, or None when nothing new is left to send them."""
    ranked = renderer.rank(sub, exclude)
    if not ranked:
        return None
    items = renderer.items(sub, ranked)
    rendered = renderer.render(sub, items)
    issue = renderer.issue
    message_id = new_message_id(settings.mail_domain, f"{issue.id}.{sub.id}")
    headers = {
        "List-Id": settings.list_id,
        **list_headers(settings, sub),
        "Feedback-ID": f"{issue.id}:digest:{issue.frequency.value}:paperdigest",
        "Precedence": "bulk",
        "Auto-Submitted": "auto-generated",
    }
    env = Envelope(
        mail_from=settings.mail_from,
        to=sub.email,
        subject=rendered.subject,
        message_id=message_id,
        headers=headers,
    )
    message = finish_message(settings, env, rendered.text, rendered.html)
    return message, message_id, [r.paper_id for r in ranked]


# ---- one batch ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0
    bounced: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "bounced"}


def _load_subscribers(conn: Connection, ids: list[int]) -> dict[int, Subscriber]:
    rows = conn.execute(select(S).where(S.c.id.in_(ids))).mappings()
    return {row["id"]: Subscriber.model_validate(dict(row)) for row in rows}


def send_batch(issue_id: int, delivery_ids: list[int]) -> dict:
    """Send the claimable deliveries among `delivery_ids` over one SMTP connection.

    Raises TransientSendError after releasing the rows it could not send, so the task is
    retried with backoff for those rows only.
    """
    settings = get_settings()
    owner = uuid.uuid4().hex
    result = BatchResult()
    # Autocommit: every statement here is its own transaction anyway (the claim, each row's
    # outcome), and this saves a BEGIN and a COMMIT round trip per statement.
    with get_engine(settings.database_url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        claimed = claim(conn, issue_id, delivery_ids, owner)
        conn.commit()
        result.claimed = len(claimed)
        if not claimed:
            return result.as_dict()
        try:
            _send_claimed(conn, settings, issue_id, claimed, owner, result)
        except BaseException as exc:
            _release_after_error(conn, [d for d, _ in claimed], owner, f"batch interrupted: {exc!r}")
            raise
    event(log, "batch.done", issue_id=issue_id, batch=owner, **result.as_dict())
    if result.deferred:
        raise TransientSendError(f"{result.deferred} deliveries deferred; retrying")
    return result.as_dict()


def _send_claimed(
    conn: Connection,
    settings: Settings,
    issue_id: int,
    claimed: list[tuple[int, int]],
    owner: str,
    result: BatchResult,
) -> None:
    renderer = renderer_for(settings, issue_id)
    subscribers = _load_subscribers(conn, [s for _, s in claimed])
    history = sent_history(conn, list(subscribers), issue_id)
    conn.commit()
    sender = open_sender(settings)
    recorder = SentRecorder(conn)
    interval = min(HEARTBEAT_SECONDS, settings.stale_claim_seconds / 3)
    beat = time.monotonic()
    lost: set[int] = set()
    try:
        for n, (delivery_id, sub_id) in enumerate(claimed):
            if time.monotonic() - beat > interval:
                recorder.wait()
                rest = [d for d, _ in claimed[n:]]
                lost = set(rest) - heartbeat(conn, rest, owner)
                beat = time.monotonic()
            if delivery_id in lost:  # swept as stale while we were slow: someone else sends it
                continue
            outcome = _send_one(
                conn,
                settings,
                renderer,
                sender,
                delivery_id,
                subscribers.get(sub_id),
                history.get(sub_id, set()),
                owner,
                recorder,
            )
            setattr(result, outcome, getattr(result, outcome) + 1)
            if outcome == "deferred" and sender_is_down(sender):
                recorder.wait()
                rest = [d for d, _ in claimed[n + 1 :]]
                release(conn, rest, owner, "SMTP server unavailable")
                result.deferred += len(rest)
                break
    finally:
        try:
            recorder.wait()
        finally:
            sender.close()


def sender_is_down(sender) -> bool:
    """After a connection failure the next message would fail the same way: stop the batch."""
    return not sender.connected


def _send_one(
    conn: Connection,
    settings: Settings,
    renderer: DigestRenderer,
    sender,
    delivery_id: int,
    sub: Subscriber | None,
    exclude: set[int],
    owner: str,
    recorder: SentRecorder,
) -> str:
    due = sub is not None and sub.status is SubscriberStatus.confirmed
    # Render while the previous row's "sent" UPDATE is on its way; it must be committed before
    # this connection is used again and before this message goes out.
    built = digest_message(settings, renderer, sub, exclude) if due else None
    recorder.wait()
    if not due:
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="no longer subscribed")
        return "skipped"
    if built is None:
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="nothing new to send")
        return "skipped"
    message, message_id, paper_ids = built
    try:
        sender.send(sub.email, message)
    except PermanentSendError as exc:
        finish(conn, delivery_id, owner, DeliveryState.failed, smtp_code=exc.code, error=str(exc)[:1000])
        _bounce(conn, sub.id, str(exc))
        return "failed"
    except TransientSendError as exc:
        finish(conn, delivery_id, owner, DeliveryState.deferred, smtp_code=exc.code, error=str(exc)[:1000])
        return "deferred"
    recorder.record_sent(
        delivery_id,
        owner,
        sent_at=utcnow(),
        smtp_code=250,
        message_id=message_id,
        paper_ids=paper_ids,
        error=None,
    )
    return "sent"


def _record_sent(conn: Connection, delivery_id: int, owner: str, **values) -> None:
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
    before the next message goes out, exactly as with `_record_sent` (a killed worker repeats at
    most one message), but the commit no longer adds to the time per message. Any other
    database, and any error, goes through `_record_sent` and its retries instead.
    """

    SQL = (
        f"UPDATE {D.name} SET state = 'sent', sent_at = $1, smtp_code = 250, message_id = $2,"
        " paper_ids = $3, error = NULL WHERE id = $4 AND claimed_by = $5"
    ).encode()

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pending: tuple | None = None  # (pgconn, delivery id, owner, values) in flight

    def _pgconn(self):
        """libpq's connection under `conn`, if it is psycopg's, autocommit and idle."""
        try:
            driver = self.conn.connection.driver_connection
            pgconn = driver.pgconn
            from psycopg import pq

            if driver.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE:
                return pgconn
        except Exception:  # noqa: BLE001 - not psycopg, or not usable: the plain path
            pass
        return None

    def record_sent(self, delivery_id: int, owner: str, **values) -> None:
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
        _record_sent(self.conn, delivery_id, owner, **values)

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
        _record_sent(self.conn, delivery_id, owner, **values)

    @staticmethod
    def _collect(pgconn) -> bool:
        from psycopg import pq

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


def _release_after_error(conn: Connection, ids: list[int], owner: str, error: str) -> None:
    """Give the unsent rows back after an error. The error may be the database going away, so
    roll back first; if that fails too, leave them: the stale-claim sweep puts them back, and
    the original error (not this one) decides whether the task is retried."""
    try:
        conn.rollback()
        release(conn, ids, owner, error)
    except DBAPIError:
        event(log, "batch.release_failed", logging.WARNING, batch=owner, rows=len(ids))


def _bounce(conn: Connection, subscriber_id: int, reason: str) -> None:
    from newsletter.subscriptions import mark_bounced

    with session_scope() as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is not None:
            mark_bounced(session, sub, reason)


# ---- dispatching an issue -------------------------------------------------------------------


def pending_batches(issue_id: int, size: int) -> Iterator[list[int]]:
    """Claimable delivery ids of an issue in id order, `size` at a time (keyset pagination)."""
    engine = get_engine()
    last = 0
    while True:
        with engine.connect() as conn:
            ids = list(
                conn.execute(
                    select(D.c.id)
                    .where(D.c.issue_id == issue_id, D.c.state.in_(CLAIMABLE), D.c.id > last)
                    .order_by(D.c.id)
                    .limit(size)
                ).scalars()
            )
        if not ids:
            return
        last = ids[-1]
        yield ids


def dispatch_issue(issue_id: int, progress: Callable[[dict], None] | None = None) -> int:
    """Start a send_batch job for every batch of claimable deliveries; returns batches started."""
    settings = get_settings()
    count = 0
    for ids in pending_batches(issue_id, settings.batch_size):
        outcome = _run_batch(issue_id, ids)
        count += 1
        if progress:
            progress(outcome if isinstance(outcome, dict) else {"claimed": len(ids)})
    return count


def _run_batch(issue_id: int, ids: list[int]):
    if get_settings().uses_broker:
        return jobs.run("send_batch", issue_id, ids)
    try:
        return send_batch(issue_id, ids)
    except TransientSendError as exc:  # in-process: rows stay deferred for the next send
        event(log, "batch.deferred", logging.WARNING, issue_id=issue_id, error=str(exc))
        return {"claimed": len(ids), "deferred": len(ids)}


def recover_stale_claims(older_than: int | None = None) -> int:
    """Put back rows whose worker stopped heartbeating (killed mid-batch) and dispatch them.

    Also dispatches again every issue of the last day that still has rows to send but no claim
    for `redispatch_after_seconds` (longer than any retry backoff): its queued tasks were lost,
    e.g. with a broker that restarted empty. Dispatching twice is harmless (the claim).
    """
    settings = get_settings()
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than or settings.stale_claim_seconds)
    with get_engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            update(D)
            .where(D.c.state == DeliveryState.sending, D.c.claimed_at < cutoff)
            .values(state=DeliveryState.deferred, error="claim went stale (worker lost)")
            .returning(D.c.issue_id)
        ).all()
        conn.commit()
        stalled = stalled_issues(
            conn, now - timedelta(seconds=settings.redispatch_after_seconds), now - timedelta(hours=24)
        )
    recovered = {r[0] for r in rows}
    for issue_id in sorted(recovered | stalled):
        event(
            log,
            "issue.redispatch",
            logging.WARNING,
            issue_id=issue_id,
            reason="stale claims" if issue_id in recovered else "no progress",
        )
        jobs.run("dispatch_issue", issue_id)
    return len(rows)


def stalled_issues(conn: Connection, quiet_since: datetime, created_since: datetime) -> set[int]:
    """Issues created since `created_since` with claimable rows and no claim since `quiet_since`."""
    issues = Issue.__table__
    open_rows = func.sum(case((D.c.state.in_(CLAIMABLE), 1), else_=0))
    last_activity = func.coalesce(func.max(D.c.claimed_at), issues.c.planned_at, issues.c.created_at)
    stmt = (
        select(D.c.issue_id)
        .join(issues, issues.c.id == D.c.issue_id)
        .where(issues.c.created_at >= created_since)
        .group_by(D.c.issue_id, issues.c.planned_at, issues.c.created_at)
        .having(open_rows > 0, last_activity < quiet_since)
    )
    found = set(conn.execute(stmt).scalars())
    conn.commit()
    return found


def due_frequencies(settings: Settings, now: datetime) -> list[Frequency]:
    due = [Frequency.daily]
    if now.weekday() == settings.digest_weekday:
        due.append(Frequency.weekly)
    return due


def scheduled_send(now: datetime | None = None) -> list[int]:
    """Beat's entry point: plan and dispatch every issue due now. Safe to run twice."""
    settings = get_settings()
    now = now or utcnow()
    issue_ids = []
    for frequency in due_frequencies(settings, now):
        with session_scope() as session:
            issue, _ = plan_issue(session, frequency, now)
        jobs.run("dispatch_issue", issue.id)
        issue_ids.append(issue.id)
    return issue_ids


def delivery_counts(issue_id: int) -> dict[str, int]:
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(D.c.state, func.count()).where(D.c.issue_id == issue_id).group_by(D.c.state)
        ).all()
    counts = {s.value: 0 for s in DeliveryState}
    counts.update({(s.value if hasattr(s, "value") else str(s)): n for s, n in rows})
    return counts
