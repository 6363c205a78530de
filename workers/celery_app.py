"""`celery -A workers worker|beat`: the core's Celery app with this service's tasks and schedule.

Settings come from the same place as the CLI's (`newsletter.envfile`); settings that cannot work
stop the process with one line per problem (exit 2), not a traceback. Every log line is JSON."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from celery import bootsteps, signals
from celery.apps import worker as celery_worker
from celery.beat import PersistentScheduler

from newsletter.beat import beat_schedule
from newsletter.config import ConfigError, Settings, get_settings
from newsletter.db import dispose_engines
from newsletter.envfile import find_env_file
from newsletter.liveness import record_heartbeat
from newsletter.logs import event, setup_logging, setup_process_logging
from newsletter.worker import make_app


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"Error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


setup_process_logging("INFO")  # from here on every line is JSON, even Python's warnings
settings = _settings()
setup_process_logging(settings.log_level)
log = logging.getLogger("newsletter.workers")
app = make_app(settings)
app.conf.include = ["workers.tasks"]
app.conf.beat_schedule = beat_schedule(settings)


class _Worker(app.Worker):  # type: ignore[name-defined,misc]
    def on_before_init(self, quiet: bool = False, **kwargs: Any) -> None:  # noqa: ARG002
        super().on_before_init(quiet=True, **kwargs)  # no ASCII-art banner: every line is JSON

    def install_platform_tweaks(self, worker: Any) -> None:
        super().install_platform_tweaks(worker)
        # The same SIGTERM/SIGQUIT handlers, minus their plain "worker: Warm shutdown" line on
        # stdout; `_log_shutdown` logs it instead.
        celery_worker.install_worker_term_handler(worker, verbose=False)
        celery_worker.install_worker_term_hard_handler(worker, verbose=False)


class _Beat(app.Beat):  # type: ignore[name-defined,misc]
    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:  # noqa: ARG002
        super().__init__(*args, quiet=True, **kwargs)


app.Worker = _Worker
app.Beat = _Beat


@signals.setup_logging.connect
def _json_logs(loglevel: int | str | None = None, **_kwargs: Any) -> None:
    # Connected, so Celery installs none of its plain-text handlers. Celery's own lines follow
    # --loglevel; the newsletter's events NEWSLETTER_LOG_LEVEL, as before.
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or settings.log_level)
    setup_process_logging(str(level))
    setup_logging(settings.log_level)
    event(log, "config_loaded", path=str(find_env_file() or ""), mode=settings.mode)


@signals.worker_shutting_down.connect
def _log_shutdown(sig: str = "", how: str = "", **_kwargs: Any) -> None:
    event(log, "worker.shutting_down", signal=sig, how=how)


@signals.worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    # A forked child must not reuse the parent's pooled database sockets.
    dispose_engines()


# ---- heartbeats: readiness (`/readyz`, `newsletter check`) fails when these grow old ----------

heartbeat_log = logging.getLogger("newsletter.liveness")


def _beat_safely(who: str) -> None:
    try:
        record_heartbeat(settings, who)
    except Exception as exc:  # noqa: BLE001 - Redis away: readiness will say so; keep working
        event(heartbeat_log, "heartbeat.failed", logging.WARNING, who=who, error=type(exc).__name__)


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
