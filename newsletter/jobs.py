"""Background jobs: through Celery when a broker is configured, in-process otherwise.

A job is a plain core function whose first parameter is `Settings` and whose other arguments
are JSON values (ids). `run` and `enqueue` take the function itself, so go-to-definition leads
from a caller to the work; with a broker they publish it as the task `newsletter.<name>`, which
`workers/tasks.py` registers around the same function. This module alone decides between the
broker and the current process, and (`held`) whether an in-process job runs at once or is
handed to the caller to start later, which the web app does once a request's answer is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from sqlmodel import Session

from newsletter.config import Settings
from newsletter.db import after_commit
from newsletter.errors import OperatorError
from newsletter.liveness import shown_broker
from newsletter.worker import publisher

log = logging.getLogger("newsletter.jobs")

Job = Callable[..., Any]
Work = list[Callable[[], None]]

# In-process jobs collected by `held` instead of run; None outside such a block.
_held: ContextVar[Work | None] = ContextVar("newsletter_jobs_held", default=None)
# Few threads: enough for confirmation emails, and a slow relay holds these, not request threads.
_background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="newsletter-job")


def task_name(job: Job) -> str:
    """The Celery task name a job is published under."""
    return f"newsletter.{job.__name__}"


def run(settings: Settings, job: Job, *args: Any) -> Any:
    """Start `job` now: publish it to the broker, or call it in this process.

    Errors propagate either way (a broker that is down, a job that failed in-process); `enqueue`
    is where they are caught for work queued behind a request.
    """
    if settings.uses_broker:
        try:
            return publisher(settings).send_task(task_name(job), args=list(args))
        except (BrokerError, OSError) as exc:  # kombu's is no OSError: the CLI showed a traceback
            raise BrokerUnreachable(f"cannot reach the broker at {shown_broker(settings)}: {exc}") from exc
    return job(settings, *args)


class BrokerUnreachable(OperatorError):
    """A job could not be published: the broker is down or unreachable."""


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

    held = _held.get()
    if held is not None and not settings.uses_broker:
        after_commit(session, lambda: held.append(publish))
    else:
        after_commit(session, publish)


@contextmanager
def held() -> Iterator[Work]:
    """Inside this block (and in threads that copy its context), in-process jobs that `enqueue`
    would run after their commit are appended to the yielded list instead; start them with
    `run_later`. Jobs published to a broker are not held: publishing is quick and the broker
    runs them elsewhere anyway."""
    work: Work = []
    token = _held.set(work)
    try:
        yield work
    finally:
        _held.reset(token)


def run_later(work: Work) -> Future[None]:
    """Run `work`, in order, on a small background thread pool (4 threads)."""
    return _background.submit(_run_all, work)


def _run_all(work: Work) -> None:
    for publish in work:
        publish()
