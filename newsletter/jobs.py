"""Background jobs by name: through Celery when a broker is configured, in-process otherwise.

Each job is a plain function in the core; `workers/` wraps the same functions as Celery tasks
under the same names, so the embedded default and the scaled-out service run the same code.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from newsletter.config import get_settings
from newsletter.db import after_commit

log = logging.getLogger("newsletter.jobs")

# name -> "module:function" of the plain function that does the work
JOBS: dict[str, str] = {
    "send_transactional": "newsletter.mail.transactional:send_transactional",
    "send_batch": "newsletter.delivery:send_batch",
    "dispatch_issue": "newsletter.delivery:dispatch_issue",
    "scheduled_send": "newsletter.delivery:scheduled_send",
    "recover_stale": "newsletter.delivery:recover_stale_claims",
    "ingest_papers": "newsletter.admin:scheduled_ingest",
}


def resolve(name: str) -> Callable[..., Any]:
    module, func = JOBS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run(name: str, *args: Any) -> Any:
    """Start job `name` now: publish it to the broker, or call it in this process.

    Errors propagate either way (a broker that is down, a job that failed in-process); `enqueue`
    is where they are caught for work queued behind a request.
    """
    if get_settings().uses_broker:
        from workers.celery_app import app as celery_app

        return celery_app.send_task(f"newsletter.{name}", args=list(args))
    return resolve(name)(*args)


def enqueue(session: Session, name: str, *args: Any, on_failure: Callable[[], object] | None = None) -> None:
    """Run job `name` after `session` commits (never before: the rows must exist).

    If the job cannot be queued (the broker is down) or, in-process, fails (the SMTP relay is
    down), the committed request still stands: the error is logged and `on_failure` runs, so the
    caller can undo what assumed the job would be done.
    """

    def publish() -> None:
        try:
            run(name, *args)
        except Exception:  # noqa: BLE001 - the broker's errors are many and all mean "not queued"
            log.exception("job.failed", extra={"job": name, "job_args": list(args)})
            if on_failure is not None:
                on_failure()

    after_commit(session, publish)
