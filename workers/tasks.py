"""Thin Celery tasks: ids in, a plain core function does the work, transient errors retry."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from newsletter.config import get_settings
from newsletter.jobs import resolve
from newsletter.mail.senders import TransientSendError
from workers.celery_app import app

RETRYABLE = (TransientSendError, OperationalError, ConnectionError, TimeoutError)
# Backoff 5 s, 10 s, 20 s … capped at 5 min (settings): all far below the visibility timeout.
RETRY = dict(
    autoretry_for=RETRYABLE,
    retry_backoff=get_settings().retry_backoff_seconds,
    retry_backoff_max=get_settings().retry_backoff_max_seconds,
    retry_jitter=True,
    max_retries=8,
)


@app.task(name="newsletter.send_transactional", expires=24 * 3600, **RETRY)
def send_transactional(kind: str, subscriber_id: int) -> str:
    return resolve("send_transactional")(kind, subscriber_id)


@app.task(name="newsletter.send_batch", expires=24 * 3600, **RETRY)
def send_batch(issue_id: int, delivery_ids: list[int]) -> dict:
    return resolve("send_batch")(issue_id, delivery_ids)


@app.task(name="newsletter.dispatch_issue", **RETRY)
def dispatch_issue(issue_id: int) -> int:
    return resolve("dispatch_issue")(issue_id)


@app.task(name="newsletter.scheduled_send", **RETRY)
def scheduled_send() -> list:
    return resolve("scheduled_send")()


@app.task(name="newsletter.recover_stale", expires=60)
def recover_stale() -> int:
    return resolve("recover_stale")()


@app.task(name="newsletter.ingest_papers", **RETRY)
def ingest_papers() -> dict:
    return resolve("ingest_papers")()
