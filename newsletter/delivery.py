"""Sending an issue: batches over the ledger, an atomic claim before SMTP, sent right after 250.

Guarantees (see README, "Delivery guarantees"):
- a delivery row is claimed (pending/deferred -> sending) in one UPDATE … RETURNING, so two
  workers holding the same batch never both send it;
- it is marked sent in its own short transaction right after the server's 250, so a crash
  repeats at most the one message in flight;
- the reader's status is read again right before each message (unsubscribed or erased since
  planning, or since the batch started: no digest);
- claims whose worker died are found by their stale heartbeat and put back automatically;
- an issue whose messages the relay keeps refusing pauses (`newsletter/pauses.py`): its batches
  give their rows back and claim nothing until `resume_issue`.

Every statement on the ledger is in `newsletter/ledger.py`; this module is the loop around them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from newsletter import jobs
from newsletter.config import Settings
from newsletter.db import get_engine, session_scope
from newsletter.digests import renderer_for
from newsletter.errors import NoPapers, OperatorError
from newsletter.ledger import (
    SentRecorder,
    claim,
    claimable_batches,
    expire_open,
    heartbeat,
    load_subscribers,
    plan_issue,
    release,
    renew_open,
    requeue_refused,
    requeue_stale,
    sent_history,
    stalled_issues,
)
from newsletter.logs import event
from newsletter.mail.senders import Sender, TransientSendError, open_sender
from newsletter.models import Frequency, saved_id, utcnow
from newsletter.pauses import pause_issue as pause_row
from newsletter.pauses import pause_reason, unpause_issue
from newsletter.schedule import due_slots, reader_slots, slot_readers
from newsletter.sending import Batch, commits_wait_for_disk, digest_message, send_one
from newsletter.stats import reader_count

__all__ = ["digest_message", "dispatch_issue", "recover_stale_claims", "scheduled_send", "send_batch"]

log = logging.getLogger("newsletter.delivery")
HEARTBEAT_SECONDS = 10  # at most; never more than a third of settings.stale_claim_seconds


# ---- one batch ------------------------------------------------------------------------------


@dataclass
class BatchResult:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0

    def count(self, outcome: str, n: int = 1) -> None:
        """Add `n` rows to the counter named by a row's outcome (sent, skipped, failed, deferred)."""
        if outcome not in ("sent", "skipped", "failed", "deferred"):
            raise ValueError(f"unknown outcome {outcome!r}")
        setattr(self, outcome, getattr(self, outcome) + n)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def send_batch(settings: Settings, issue_id: int, delivery_ids: list[int]) -> dict[str, int]:
    """Send the claimable deliveries among `delivery_ids` over one SMTP connection.

    Raises TransientSendError after releasing the rows it could not send, so the task is
    retried with backoff for those rows only; not when the issue is paused (nothing would be
    claimed until it is resumed).
    """
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
            paused = _send_claimed(conn, settings, issue_id, claimed, owner, result)
        except BaseException as exc:
            _release_after_error(conn, [d for d, _ in claimed], owner, f"batch interrupted: {exc!r}")
            raise
    event(log, "batch.done", issue_id=issue_id, batch=owner, paused=paused, **result.as_dict())
    if result.deferred and not paused:
        raise TransientSendError(f"{result.deferred} deliveries deferred; retrying")
    return result.as_dict()


def _send_claimed(
    conn: Connection,
    settings: Settings,
    issue_id: int,
    claimed: list[tuple[int, int]],
    owner: str,
    result: BatchResult,
) -> bool:
    """Send the claimed rows in order; True if it stopped because the issue is paused."""
    renderer = renderer_for(settings, issue_id)
    subscribers = load_subscribers(conn, [s for _, s in claimed])
    history = sent_history(conn, list(subscribers), issue_id)
    conn.commit()
    sender, recorder = open_sender(settings), SentRecorder(conn)
    batch = Batch(conn, settings, issue_id, owner, renderer, sender, recorder, subscribers, history)
    batch.build_early = not commits_wait_for_disk(conn)
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
            outcome = send_one(batch, delivery_id, sub_id, claimed[n + 1] if n + 1 < len(claimed) else None)
            if outcome == "paused":  # this row and the rest wait until the issue is resumed
                _give_back(batch, claimed[n:], "issue paused", result)
                return True
            if outcome != "lost":
                result.count(outcome)
            if outcome == "deferred" and sender_is_down(sender):
                _give_back(batch, claimed[n + 1 :], "SMTP server unavailable", result)
                break
    finally:
        try:
            recorder.wait()
        finally:
            sender.close()
    return False


def _give_back(batch: Batch, rows: list[tuple[int, int]], why: str, result: BatchResult) -> None:
    """Release claimed rows unsent (deferred), for a retry or another batch."""
    batch.recorder.wait()
    ids = [d for d, _ in rows]
    release(batch.conn, ids, batch.owner, why)
    result.count("deferred", len(ids))


def sender_is_down(sender: Sender) -> bool:
    """After a connection failure the next message would fail the same way: stop the batch."""
    return not sender.connected


def _release_after_error(conn: Connection, ids: list[int], owner: str, error: str) -> None:
    """Give the unsent rows back after an error. The error may be the database going away, so
    roll back first; if that fails too, leave them: the stale-claim sweep puts them back, and
    the original error (not this one) decides whether the task is retried."""
    try:
        conn.rollback()
        release(conn, ids, owner, error)
    except DBAPIError:
        event(log, "batch.release_failed", logging.WARNING, batch=owner, rows=len(ids))


# ---- dispatching an issue -------------------------------------------------------------------


def dispatch_issue(
    settings: Settings, issue_id: int, progress: Callable[[dict[str, Any]], None] | None = None
) -> int:
    """Start a send_batch job for every batch of claimable deliveries; returns batches started."""
    count = 0
    for ids in claimable_batches(get_engine(settings.database_url), issue_id, settings.batch_size):
        outcome = _run_batch(settings, issue_id, ids)
        count += 1
        if progress:
            progress(outcome if isinstance(outcome, dict) else {"claimed": len(ids)})
    return count


def _run_batch(settings: Settings, issue_id: int, ids: list[int]) -> Any:
    if settings.uses_broker:
        return jobs.run(settings, send_batch, issue_id, ids)
    try:
        return send_batch(settings, issue_id, ids)
    except TransientSendError as exc:  # in-process: rows stay deferred for the next send
        event(log, "batch.deferred", logging.WARNING, issue_id=issue_id, error=str(exc))
        return {"claimed": len(ids), "deferred": len(ids)}


def resume_issue(settings: Settings, issue_id: int) -> int | None:
    """Clear an issue's pause, put back its rows the relay refused while their reader stayed
    subscribed (a refused message was never accepted, so sending it again cannot duplicate it),
    and dispatch it again. Returns how many rows were put back; None if it was not paused."""
    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        reason = pause_reason(conn, issue_id)
        if not unpause_issue(conn, issue_id):
            return None
        put_back = requeue_refused(conn, issue_id)
        renew_open(conn, issue_id)  # a pause longer than the retry window gives nothing up
    try:
        jobs.run(settings, dispatch_issue, issue_id)
    except jobs.BrokerUnreachable as exc:  # paused again, as it was: resuming stays possible
        with engine.connect() as conn:
            pause_row(conn, issue_id, reason or "")
        raise OperatorError(
            f"{exc}. Issue {issue_id} stays paused: resume it once the broker is back"
        ) from exc
    event(log, "issue.resumed", logging.WARNING, issue_id=issue_id, put_back=put_back)
    return put_back


def recover_stale_claims(settings: Settings, older_than: int | None = None) -> int:
    """Put back rows whose worker stopped heartbeating (killed mid-batch) and dispatch them.

    Also dispatches again every issue with rows due for less than `deferred_retry_days` still
    to send but no claim for `redispatch_after_seconds` (longer than any retry backoff): its
    queued tasks were lost (a broker that restarted empty), or its retries ran out (a relay down
    for hours). Dispatching twice is harmless (the claim). Rows due for longer (counted from
    their own planning, or from the resume of a paused issue; never while it is paused) are
    given up: failed, "gave up after N days", and logged as `issue.rows_expired`.
    Returns how many claims were put back.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than or settings.stale_claim_seconds)
    days = settings.deferred_retry_days
    window = now - timedelta(days=days)
    with get_engine(settings.database_url).connect() as conn:
        requeued = requeue_stale(conn, cutoff)
        expired = Counter(expire_open(conn, window, f"gave up after {days} day{'s' * (days != 1)}"))
        stalled = stalled_issues(conn, now - timedelta(seconds=settings.redispatch_after_seconds), window)
    for issue_id, rows in sorted(expired.items()):
        event(log, "issue.rows_expired", logging.ERROR, issue_id=issue_id, rows=rows, days=days)
    recovered = set(requeued) - set(expired)
    for issue_id in sorted(recovered | stalled):
        event(
            log,
            "issue.redispatch",
            logging.WARNING,
            issue_id=issue_id,
            reason="stale claims" if issue_id in recovered else "no progress",
        )
        jobs.run(settings, dispatch_issue, issue_id)
    return len(requeued)


# ---- the schedule ---------------------------------------------------------------------------


def scheduled_send(settings: Settings, now: datetime | None = None) -> list[int]:
    """Beat's hourly entry point: plan every reader whose local slot has arrived into the issue
    of that slot's period (`newsletter/schedule.py`), then dispatch those issues. Safe to run
    twice and from two beats at once: the issue's period and the ledger's (issue, reader) row
    are unique. A daily slot with no reader makes no edition (none in the archive). Returns the
    issues dispatched."""
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        slots = due_slots(settings, reader_slots(session, settings), now)
    issue_ids: list[int] = []
    for slot in slots:
        with session_scope(settings.database_url) as session:
            if slot.frequency is Frequency.daily and not reader_count(
                session, slot.frequency, slot_readers(settings, slot)
            ):
                event(log, "schedule.no_readers", period=slot.period, zones=len(slot.zones))
                continue
            try:
                issue, planned = plan_issue(session, slot.frequency, slot.at, slot_readers(settings, slot))
            except NoPapers:  # the next ticks (catch-up hours) plan these readers once papers come
                event(log, "schedule.no_papers", logging.ERROR, period=slot.period, zones=len(slot.zones))
                continue
        event(
            log,
            "schedule.slot",
            zones=len(slot.zones),
            period=slot.period,
            weekday=slot.weekday,
            planned=planned,
        )
        if saved_id(issue) not in issue_ids:
            issue_ids.append(saved_id(issue))
    for issue_id in issue_ids:
        jobs.run(settings, dispatch_issue, issue_id)
    return issue_ids
