"""Thin Celery tasks: ids in, the core function they wrap does the work, transient errors retry.

Each task is registered as `jobs.task_name(fn)`, the name `newsletter.jobs.run` publishes, and
calls `fn(settings, *ids)` with the worker's settings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from newsletter.delivery import dispatch_issue, recover_stale_claims, scheduled_send, send_batch
from newsletter.jobs import task_name
from newsletter.mail.senders import TransientSendError
from newsletter.mail.transactional import send_journey_email, sweep_journey_emails
from newsletter.papers.ingest import scheduled_ingest
from newsletter.privacy import forget_unconfirmed
from workers.celery_app import app, settings

RETRYABLE = (TransientSendError, OperationalError, ConnectionError, TimeoutError)
# Backoff 5 s, 10 s, 20 s … capped at 5 min (settings): all far below the visibility timeout.
RETRY: dict[str, Any] = {
    "autoretry_for": RETRYABLE,
    "retry_backoff": settings.retry_backoff_seconds,
    "retry_backoff_max": settings.retry_backoff_max_seconds,
    "retry_jitter": True,
    "max_retries": 8,
}
DAY = 24 * 3600


@app.task(name=task_name(send_journey_email), expires=DAY, **RETRY)
def send_journey_email_task(email_id: int) -> str:
    return send_journey_email(settings, email_id)


@app.task(name=task_name(sweep_journey_emails), expires=60)
def sweep_journey_emails_task() -> dict[str, int]:
    return sweep_journey_emails(settings)


@app.task(name=task_name(send_batch), expires=DAY, **RETRY)
def send_batch_task(issue_id: int, delivery_ids: list[int]) -> dict[str, int]:
    return send_batch(settings, issue_id, delivery_ids)


@app.task(name=task_name(dispatch_issue), **RETRY)
def dispatch_issue_task(issue_id: int) -> int:
    return dispatch_issue(settings, issue_id)


@app.task(name=task_name(scheduled_send), **RETRY)
def scheduled_send_task() -> list[int]:
    return scheduled_send(settings)


@app.task(name=task_name(recover_stale_claims), expires=60)
def recover_stale_claims_task() -> int:
    return recover_stale_claims(settings)


@app.task(name=task_name(scheduled_ingest), **RETRY)
def scheduled_ingest_task() -> dict[str, Any]:
    return scheduled_ingest(settings)


@app.task(name=task_name(forget_unconfirmed), expires=DAY)
def forget_unconfirmed_task() -> int:
    return forget_unconfirmed(settings)
