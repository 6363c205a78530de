"""The Celery app, its configuration (see shared/reference/delivery.md §1) and beat schedule."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab
from celery.signals import after_setup_logger, worker_process_init

from newsletter.config import get_settings

# Redis redelivers any unacknowledged message after the visibility timeout, so every task and
# every retry countdown stays far below it, and sending is idempotent in the database anyway.
VISIBILITY_TIMEOUT = 2 * 3600


def make_app() -> Celery:
    settings = get_settings()
    app = Celery(
        "newsletter", broker=settings.broker_url or "redis://127.0.0.1:6379/0", include=["workers.tasks"]
    )
    app.conf.update(
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        visibility_timeout=VISIBILITY_TIMEOUT,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_soft_shutdown_timeout=10,
        task_time_limit=1800,
        task_soft_time_limit=1500,
        task_serializer="json",
        accept_content=["json"],
        timezone=settings.timezone,
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "digests": {
                "task": "newsletter.scheduled_send",
                "schedule": crontab(minute=0, hour=settings.digest_hour),
            },
            "ingest": {
                "task": "newsletter.ingest_papers",
                "schedule": crontab(minute=0, hour=settings.ingest_hour),
            },
            "recover-stale-claims": {
                "task": "newsletter.recover_stale",
                "schedule": settings.recover_interval_seconds,
            },
        },
    )
    return app


app = make_app()


@after_setup_logger.connect
def _json_logs(**_kwargs) -> None:
    from newsletter.logs import setup_logging

    setup_logging()


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # A forked child must not reuse the parent's pooled database sockets.
    from newsletter.db import dispose_engines

    dispose_engines()
