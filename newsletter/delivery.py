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

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from newsletter import jobs
from newsletter.config import Settings, get_settings
from newsletter.db import get_engine, session_scope
from newsletter.digests import DigestRenderer, plan_issue
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
HEARTBEAT_SECONDS = 10
CLAIMABLE = (DeliveryState.pending, DeliveryState.deferred)


# ---- the ledger -----------------------------------------------------------------------------

def claim(conn: Connection, issue_id: int, ids: list[int], owner: str) -> list[tuple[int, int]]:
    """Atomically take the claimable rows among `ids`; returns (delivery id, subscriber id)."""
    stmt = (update(D).where(D.c.id.in_(ids), D.c.issue_id == issue_id, D.c.state.in_(CLAIMABLE))
            .values(state=DeliveryState.sending, claimed_at=utcnow(), claimed_by=owner,
                    attempts=D.c.attempts + 1)
            .returning(D.c.id, D.c.subscriber_id))
    return sorted((row[0], row[1]) for row in conn.execute(stmt))


def finish(conn: Connection, delivery_id: int, owner: str, state: DeliveryState, **values) -> None:
    """Record the outcome of one claimed row, in its own transaction."""
    conn.execute(update(D).where(D.c.id == delivery_id, D.c.claimed_by == owner)
                 .values(state=state, **values))
    conn.commit()


def release(conn: Connection, ids: list[int], owner: str, error: str) -> None:
    """Give unsent claimed rows back (deferred) so a retry or another worker picks them up."""
    if ids:
        conn.execute(update(D).where(D.c.id.in_(ids), D.c.claimed_by == owner,
                                     D.c.state == DeliveryState.sending)
                     .values(state=DeliveryState.deferred, error=error[:1000]))
        conn.commit()


def heartbeat(conn: Connection, ids: list[int], owner: str) -> None:
    if ids:
        conn.execute(update(D).where(D.c.id.in_(ids), D.c.claimed_by == owner,
                                     D.c.state == DeliveryState.sending)
                     .values(claimed_at=utcnow()))
        conn.commit()


def sent_history(conn: Connection, subscriber_ids: list[int], issue_id: int) -> dict[int, set[int]]:
    """Papers each subscriber already received in earlier issues (never send one twice)."""
    history: dict[int, set[int]] = {sid: set() for sid in subscriber_ids}
    rows = conn.execute(select(D.c.subscriber_id, D.c.paper_ids).where(
        D.c.subscriber_id.in_(subscriber_ids), D.c.state == DeliveryState.sent,
        D.c.issue_id != issue_id))
    for sid, paper_ids in rows:
        history[sid].update(paper_ids or ())
    return history


# ---- rendering one issue, cached per worker process -----------------------------------------

_renderers: OrderedDict[tuple[str, int], DigestRenderer] = OrderedDict()


def renderer_for(settings: Settings, issue_id: int) -> DigestRenderer:
    """The issue's renderer, built (and premailer run) once per process, not per batch."""
    key = (settings.database_url, issue_id)
    if key not in _renderers:
        with session_scope(settings.database_url) as session:
            issue = session.get(Issue, issue_id)
            if issue is None:
                raise LookupError(f"issue {issue_id} does not exist")
            _renderers[key] = DigestRenderer.load(session, settings, issue)
        while len(_renderers) > 4:
            _renderers.popitem(last=False)
    return _renderers[key]


def digest_message(settings: Settings, renderer: DigestRenderer, sub: Subscriber,
                   exclude: set[int]) -> tuple[bytes, str, list[int]] | None:
    """The finished message for one reader, or None when nothing new is left to send them."""
    ranked = renderer.rank(sub, exclude)
    if not ranked:
        return None
    items = renderer.items(sub, ranked)
    rendered = renderer.render(sub, items)
    issue = renderer.issue
    message_id = new_message_id(settings.mail_domain, f"{issue.id}.{sub.id}")
    headers = {"List-Id": settings.list_id, **list_headers(settings, sub),
               "Feedback-ID": f"{issue.id}:digest:{issue.frequency.value}:paperdigest",
               "Precedence": "bulk", "Auto-Submitted": "auto-generated"}
    env = Envelope(mail_from=settings.mail_from, to=sub.email, subject=rendered.subject,
                   message_id=message_id, headers=headers)
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
    with get_engine(settings.database_url).connect() as conn:
        claimed = claim(conn, issue_id, delivery_ids, owner)
        conn.commit()
        result.claimed = len(claimed)
        if not claimed:
            return result.as_dict()
        try:
            _send_claimed(conn, settings, issue_id, claimed, owner, result)
        except BaseException as exc:
            release(conn, [d for d, _ in claimed], owner, f"batch interrupted: {exc!r}")
            raise
    log.info("issue %s batch: %s", issue_id, result.as_dict())
    if result.deferred:
        raise TransientSendError(f"{result.deferred} deliveries deferred; retrying")
    return result.as_dict()


def _send_claimed(conn: Connection, settings: Settings, issue_id: int,
                  claimed: list[tuple[int, int]], owner: str, result: BatchResult) -> None:
    renderer = renderer_for(settings, issue_id)
    subscribers = _load_subscribers(conn, [s for _, s in claimed])
    history = sent_history(conn, list(subscribers), issue_id)
    conn.commit()
    sender = open_sender(settings)
    beat = time.monotonic()
    try:
        for n, (delivery_id, sub_id) in enumerate(claimed):
            if time.monotonic() - beat > HEARTBEAT_SECONDS:
                heartbeat(conn, [d for d, _ in claimed[n:]], owner)
                beat = time.monotonic()
            outcome = _send_one(conn, settings, renderer, sender, delivery_id,
                                subscribers.get(sub_id), history.get(sub_id, set()), owner)
            setattr(result, outcome, getattr(result, outcome) + 1)
            if outcome == "deferred" and sender_is_down(sender):
                rest = [d for d, _ in claimed[n + 1:]]
                release(conn, rest, owner, "SMTP server unavailable")
                result.deferred += len(rest)
                break
    finally:
        sender.close()


def sender_is_down(sender) -> bool:
    """After a connection failure the next message would fail the same way: stop the batch."""
    return not sender.connected


def _send_one(conn: Connection, settings: Settings, renderer: DigestRenderer, sender,
              delivery_id: int, sub: Subscriber | None, exclude: set[int], owner: str) -> str:
    if sub is None or sub.status is not SubscriberStatus.confirmed:
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="no longer subscribed")
        return "skipped"
    built = digest_message(settings, renderer, sub, exclude)
    if built is None:
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="nothing new to send")
        return "skipped"
    message, message_id, paper_ids = built
    try:
        sender.send(sub.email, message)
    except PermanentSendError as exc:
        finish(conn, delivery_id, owner, DeliveryState.failed, smtp_code=exc.code,
               error=str(exc)[:1000])
        _bounce(conn, sub.id, str(exc))
        return "failed"
    except TransientSendError as exc:
        finish(conn, delivery_id, owner, DeliveryState.deferred, smtp_code=exc.code,
               error=str(exc)[:1000])
        return "deferred"
    finish(conn, delivery_id, owner, DeliveryState.sent, sent_at=utcnow(), smtp_code=250,
           message_id=message_id, paper_ids=paper_ids, error=None)
    return "sent"


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
            ids = list(conn.execute(
                select(D.c.id).where(D.c.issue_id == issue_id, D.c.state.in_(CLAIMABLE),
                                     D.c.id > last).order_by(D.c.id).limit(size)).scalars())
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
        log.warning("issue %s: %s", issue_id, exc)
        return {"claimed": len(ids), "deferred": len(ids)}


def recover_stale_claims(older_than: int | None = None) -> int:
    """Put back rows whose worker stopped heartbeating (killed mid-batch) and dispatch them."""
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=older_than or settings.stale_claim_seconds)
    with get_engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            update(D).where(D.c.state == DeliveryState.sending, D.c.claimed_at < cutoff)
            .values(state=DeliveryState.deferred, error="claim went stale (worker lost)")
            .returning(D.c.issue_id)).all()
        conn.commit()
    for issue_id in sorted({r[0] for r in rows}):
        log.warning("recovered stale claims of issue %s", issue_id)
        jobs.run("dispatch_issue", issue_id)
    return len(rows)


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
        rows = conn.execute(select(D.c.state, func.count()).where(D.c.issue_id == issue_id)
                            .group_by(D.c.state)).all()
    counts = {s.value: 0 for s in DeliveryState}
    counts.update({(s.value if hasattr(s, "value") else str(s)): n for s, n in rows})
    return counts
