"""The one-off emails of the subscriber journey: confirm, welcome, already subscribed.

Each is a row of the journey outbox (`newsletter/outbox.py`), written in the transaction that
calls for it. `send_journey_email` sends one row by id (queued right after that commit);
`sweep_journey_emails` (beat) puts back claims whose worker died and queues again every row
whose job was lost or whose retry is due.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from newsletter import jobs, links, outbox
from newsletter.bounces import verp
from newsletter.config import Settings
from newsletter.db import get_engine
from newsletter.logs import event
from newsletter.mail.compose import finish_message, list_headers
from newsletter.mail.journey_html import render_journey_email
from newsletter.mail.message import Envelope, new_message_id
from newsletter.mail.senders import PermanentSendError, Sender, TransientSendError, kept_sender
from newsletter.models import DeliveryState, Frequency, Subscriber, SubscriberStatus, table_of, utcnow
from newsletter.schedule import next_digest_text

log = logging.getLogger("newsletter.mail")

# Which state a subscriber must still be in for the email to make sense when it is sent.
REQUIRED_STATE = {
    "confirm": SubscriberStatus.pending,
    "welcome": SubscriberStatus.confirmed,
    "already_subscribed": SubscriberStatus.confirmed,
}
MAX_RETRY_GAP = timedelta(hours=1)  # the sweep's backoff between tries of one email, at most


def journey_context(settings: Settings, kind: str, sub: Subscriber) -> dict[str, Any]:
    """The template context of one journey email (its links signed now)."""
    context: dict[str, Any] = {
        "email": sub.email,
        "base_url": settings.base_url.rstrip("/"),
        "interests": sub.interests,
        "confirm_hours": settings.confirm_token_hours,
        "next_digest": next_digest_text(settings, sub),
        "period": "day" if sub.frequency is Frequency.daily else "week",
        "cadence": sub.frequency.value,  # "a daily email": the confirmation said "weekly" to all
    }
    if kind == "confirm":
        context["confirm_url"] = links.confirm_url(settings, sub)
    else:
        context["preferences_url"] = links.preferences_url(settings, sub)
        context["unsubscribe_url"] = links.unsubscribe_url(settings, sub)
    return context


def transactional_message(
    settings: Settings, kind: str, sub: Subscriber, message_id: str | None = None
) -> bytes:
    context = journey_context(settings, kind, sub)
    headers = {"Auto-Submitted": "auto-generated"}
    if kind != "confirm":
        headers.update(list_headers(settings, sub))
    rendered = render_journey_email(settings, kind, context)  # premailer once per process, not per email
    env = Envelope(
        mail_from=settings.mail_from,
        to=sub.email,
        subject=rendered.subject,
        message_id=message_id or new_message_id(settings.mail_domain, kind),  # no subscriber id (L13)
        headers=headers,
    )
    return finish_message(settings, env, rendered.text, rendered.html)


@contextmanager
def _autocommit(settings: Settings) -> Iterator[Connection]:
    # Every outbox statement is its own transaction (claim, outcome), as in the digest ledger.
    with get_engine(settings.database_url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield conn


def send_journey_email(settings: Settings, email_id: int) -> str:
    """Send one outbox row if it is still due; returns sent, skipped, refused, failed or not-due.

    The row is claimed first (no two processes send it), the subscriber re-checked, and the row
    marked sent right after the server's 250 (the connection stays open for the next email): a
    process killed in between repeats this one email at most, and nothing is sent again once a
    250 is recorded.
    A transient failure defers the row and raises TransientSendError (the task retries; beat's
    sweep takes over when it cannot) until `journey_max_attempts` tries end it as failed.
    """
    owner = uuid.uuid4().hex
    sender = kept_sender(settings)  # one connection per process, not one per email
    with _autocommit(settings) as conn:
        job = outbox.claim(conn, email_id, owner)
        if job is None:
            return "not-due"  # sent or finished already, in another job's hands, or erased
        try:
            message_id = _send_claimed(conn, settings, sender, email_id, job, owner)
        except PermanentSendError as exc:
            outbox.finish(
                conn, email_id, owner, DeliveryState.failed, smtp_code=exc.code, error=str(exc)[:1000]
            )
            _log_outcome("mail.refused", email_id, job, smtp_code=exc.code, error=str(exc))
            return "refused"
        except TransientSendError as exc:
            if _give_back(conn, settings, email_id, job, owner, exc):
                raise
            return "failed"
        except BaseException as exc:
            _give_back_after_error(conn, settings, email_id, job, owner, exc)
            raise
        if message_id is None:
            return "skipped"
        outbox.record_sent(
            conn, email_id, owner, sent_at=utcnow(), smtp_code=250, message_id=message_id, error=None
        )
    _log_outcome("mail.sent", email_id, job)
    return "sent"


def _send_claimed(
    conn: Connection, settings: Settings, sender: Sender, email_id: int, job: outbox.Claimed, owner: str
) -> str | None:
    """Re-check the claimed email and hand it to SMTP; its Message-ID, or None when it was
    skipped (the row is then finished)."""
    sub = _subscriber(conn, job.subscriber_id)
    reason = _reason_to_skip(settings, job, sub)
    if reason is not None or sub is None:
        outbox.finish(conn, email_id, owner, DeliveryState.skipped, error=reason)
        _log_outcome("mail.skipped", email_id, job, reason=reason)
        return None
    message_id = new_message_id(settings.mail_domain, job.kind)
    return_path = verp.bounce_address(settings, verp.JOURNEY, email_id, sub.token_key)
    sender.send(sub.email, transactional_message(settings, job.kind, sub, message_id), mail_from=return_path)
    return message_id


def _log_outcome(name: str, email_id: int, job: outbox.Claimed, **fields: object) -> None:
    level = logging.WARNING if name == "mail.refused" else logging.INFO
    event(log, name, level, email_id=email_id, kind=job.kind, subscriber_id=job.subscriber_id, **fields)


def _subscriber(conn: Connection, subscriber_id: int) -> Subscriber | None:
    subscribers = table_of(Subscriber)
    row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return Subscriber.model_validate(dict(row._mapping)) if row is not None else None


def _reason_to_skip(settings: Settings, job: outbox.Claimed, sub: Subscriber | None) -> str | None:
    """Why this email no longer makes sense (None: send it)."""
    if sub is None:
        return "subscriber erased"
    if sub.status is not REQUIRED_STATE[job.kind]:
        return f"subscriber is {sub.status.value} now"
    if job.kind == "confirm" and utcnow() - job.created_at > timedelta(hours=settings.confirm_token_hours):
        return "older than a confirmation link lives"  # a backlog older than the link: not worth sending
    return None


def retry_gap(settings: Settings, attempts: int) -> timedelta:
    """How long the sweep waits before trying an email again after its `attempts`-th try."""
    gap = timedelta(seconds=settings.journey_requeue_after_seconds * 2 ** max(attempts - 1, 0))
    return min(gap, MAX_RETRY_GAP)


def _give_back(
    conn: Connection, settings: Settings, email_id: int, job: outbox.Claimed, owner: str, exc: BaseException
) -> bool:
    """Defer the row (due again after `retry_gap`), or fail it for good once its tries are used
    up; True if it will be tried again."""
    again = job.attempts < settings.journey_max_attempts
    error = str(exc) if again else f"gave up after {job.attempts} tries: {exc}"
    outbox.finish(
        conn,
        email_id,
        owner,
        DeliveryState.deferred if again else DeliveryState.failed,
        smtp_code=getattr(exc, "code", None),
        error=error[:1000],
        next_attempt_at=utcnow() + retry_gap(settings, job.attempts),
    )
    if not again:
        event(log, "journey.gave_up", logging.WARNING, email_id=email_id, kind=job.kind, error=error)
    return again


def _give_back_after_error(
    conn: Connection, settings: Settings, email_id: int, job: outbox.Claimed, owner: str, exc: BaseException
) -> None:
    """After an unexpected error (the database going away, a shutdown): roll back, give the row
    back; if even that fails, leave it to the stale-claim sweep."""
    try:
        conn.rollback()
        _give_back(conn, settings, email_id, job, owner, exc)
    except DBAPIError:
        event(log, "journey.give_back_failed", logging.WARNING, email_id=email_id)


def sweep_journey_emails(settings: Settings) -> dict[str, int]:
    """Beat's sweep of the journey outbox; safe to run twice (the claim).

    Claims older than `stale_claim_seconds` are put back (their worker died), then every row
    whose `next_attempt_at` has come is queued again: its job was lost with the broker, or its
    retry is due. Returns how many claims were put back and how many rows were queued.
    """
    now = utcnow()
    with _autocommit(settings) as conn:
        cutoff = now - timedelta(seconds=settings.stale_claim_seconds)
        stale = outbox.requeue_stale(conn, cutoff, settings.journey_max_attempts, now)
        due = outbox.take_due(conn, now, now + timedelta(seconds=settings.journey_requeue_after_seconds))
    for email_id, state in stale:
        name = "journey.gave_up" if state is DeliveryState.failed else "journey.stale_claim"
        event(log, name, logging.WARNING, email_id=email_id, reason="claim went stale")
    for email_id in due:
        try:
            jobs.run(settings, send_journey_email, email_id)
        except TransientSendError:  # in-process only: the row is deferred with its backoff
            continue
    if stale or due:
        event(log, "journey.sweep", stale=len(stale), queued=len(due))
    return {"stale": len(stale), "queued": len(due)}
