"""The Celery app, built in the core from `Settings`; `workers/` only adds its entry points.

Redis redelivers any unacknowledged message after the visibility timeout, so every task and
every retry countdown stays far below it, and sending is idempotent in the database anyway.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from newsletter.config import Settings

VISIBILITY_TIMEOUT = 2 * 3600
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def make_app(settings: Settings) -> Celery:
    """A Celery app configured for this service: late acks, no prefetch, JSON, no results."""
    app = Celery("newsletter", broker=settings.broker_url or DEFAULT_BROKER)
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
    )
    return app


@lru_cache(maxsize=4)
def _publisher(broker_url: str, timezone: str) -> Celery:
    return make_app(Settings.model_construct(broker_url=broker_url, timezone=timezone))


def publisher(settings: Settings) -> Celery:
    """The app a process uses to publish tasks to `settings.broker_url` (one per broker)."""
    return _publisher(settings.broker_url or DEFAULT_BROKER, settings.timezone)
