"""`celery -A workers worker|beat`: the core's Celery app with this service's tasks and schedule."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.beat import PersistentScheduler
from celery.schedules import crontab
from celery.signals import after_setup_logger, worker_process_init

from newsletter.config import get_settings
from newsletter.db import dispose_engines
from newsletter.delivery import recover_stale_claims, scheduled_send
from newsletter.jobs import task_name
from newsletter.liveness import record_heartbeat
from newsletter.logs import event, setup_logging
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


# ---- heartbeats: readiness (`/readyz`, `newsletter check`) fails when these grow old ----------

log = logging.getLogger("newsletter.liveness")


def _beat_safely(who: str) -> None:
    try:
        record_heartbeat(settings, who)
    except Exception as exc:  # noqa: BLE001 - Redis away: readiness will say so; keep working
        event(log, "heartbeat.failed", logging.WARNING, who=who, error=type(exc).__name__)


class Heartbeat(bootsteps.StartStopStep):
    """Each worker notes "worker:<node name>" every heartbeat_interval_seconds, from its event
    loop's timer (so a worker stuck there stops beating)."""

    requires = {"celery.worker.components:Timer"}

    def start(self, worker: Any) -> None:
        who = f"worker:{worker.hostname}"
        _beat_safely(who)
        self.tref = worker.timer.call_repeatedly(settings.heartbeat_interval_seconds, _beat_safely, (who,))

    def stop(self, _worker: Any) -> None:
        tref = getattr(self, "tref", None)
        if tref is not None:
            tref.cancel()


class RecordingScheduler(PersistentScheduler):
    """Beat's scheduler (schedule file as usual) noting "beat" at least every
    heartbeat_interval_seconds of its loop."""

    last_noted = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait = super().tick(*args, **kwargs)
        if time.monotonic() - self.last_noted >= settings.heartbeat_interval_seconds:
            _beat_safely("beat")
            self.last_noted = time.monotonic()
        return min(wait, settings.heartbeat_interval_seconds)


app.steps["worker"].add(Heartbeat)
app.conf.beat_scheduler = "workers.celery_app:RecordingScheduler"
