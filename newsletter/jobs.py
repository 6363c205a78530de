"""Background jobs: through Celery when a broker is configured, in-process otherwise.

A job is a plain core function whose first parameter is `Settings` and whose other arguments
are JSON values (ids). `run` and `enqueue` take the function itself, so go-to-definition leads
from a caller to the work; with a broker they publish it as the task `newsletter.<name>`, which
`workers/tasks.py` registers around the same function. This module alone decides between the
broker and the current process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import after_commit
from newsletter.worker import publisher

log = logging.getLogger("newsletter.jobs")

Job = Callable[..., Any]


def task_name(job: Job) -> str:
    """The Celery task name a job is published under."""
    return f"newsletter.{job.__name__}"


def run(settings: Settings, job: Job, *args: Any) -> Any:
    """Start `job` now: publish it to the broker, or call it in this process.

    Errors propagate either way (a broker that is down, a job that failed in-process); `enqueue`
    is where they are caught for work queued behind a request.
    """
    if settings.uses_broker:
        return publisher(settings).send_task(task_name(job), args=list(args))
    return job(settings, *args)


def enqueue(
    session: Session,
    settings: Settings,
    job: Job,
    *args: Any,
    on_failure: Callable[[], object] | None = None,
) -> None:
    """Run `job` after `session` commits (never before: the rows must exist).

    If the job cannot be queued (the broker is down) or, in-process, fails (the SMTP relay is
    down), the committed request still stands: the error is logged and `on_failure` runs, so the
    caller can undo what assumed the job would be done.
    """

    def publish() -> None:
        try:
            run(settings, job, *args)
        except Exception:  # noqa: BLE001 - the broker's errors are many and all mean "not queued"
            log.exception("job.failed", extra={"job": task_name(job), "job_args": list(args)})
            if on_failure is not None:
                on_failure()

    after_commit(session, publish)
