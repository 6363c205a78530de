"""`celery -A workers worker|beat`: the core's Celery app with this service's tasks and schedule."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from celery.signals import after_setup_logger, worker_process_init

from newsletter.config import get_settings
from newsletter.db import dispose_engines
from newsletter.delivery import recover_stale_claims, scheduled_send
from newsletter.jobs import task_name
from newsletter.logs import setup_logging
from newsletter.mail.transactional import sweep_journey_emails
from newsletter.papers.ingest import scheduled_ingest
from newsletter.worker import make_app

settings = get_settings()
app = make_app(settings)
app.conf.include = ["workers.tasks"]
app.conf.beat_schedule = {
    # Hourly: each reader's slot is NEWSLETTER_DIGEST_HOUR in their own zone (newsletter/schedule.py).
    "digests": {"task": task_name(scheduled_send), "schedule": crontab(minute=0)},
    "ingest": {"task": task_name(scheduled_ingest), "schedule": crontab(minute=0, hour=settings.ingest_hour)},
    "recover-stale-claims": {
        "task": task_name(recover_stale_claims),
        "schedule": settings.recover_interval_seconds,
    },
    "journey-emails": {
        "task": task_name(sweep_journey_emails),
        "schedule": settings.recover_interval_seconds,
    },
}


@after_setup_logger.connect
def _json_logs(**_kwargs: Any) -> None:
    setup_logging(settings.log_level)


@worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    # A forked child must not reuse the parent's pooled database sockets.
    dispose_engines()
