"""Is the service ready to do its job? Database, schema, broker, a live worker, a live beat.

`/healthz` only says the web process answers; `check_readiness` is what `/readyz` and
`newsletter check` report. Details name what failed and how, never a URL, host or password.
"""

from __future__ import annotations

import math

import redis
from kombu import Connection
from pydantic import BaseModel
from sqlalchemy import text

from newsletter import liveness
from newsletter.config import Settings
from newsletter.db import get_engine
from newsletter.migrate import current_revisions, head_revisions


class Check(BaseModel):
    name: str  # database, migrations, broker, worker, beat
    ok: bool
    detail: str
    age_seconds: float | None = None  # worker and beat: the newest heartbeat's age


class Readiness(BaseModel):
    ready: bool
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def check_readiness(settings: Settings) -> Readiness:
    """Every check, each independent of the others' outcome (one failure does not hide another)."""
    checks = [*_database_checks(settings), _broker_check(settings)]
    checks += _heartbeat_checks(settings)
    return Readiness(ready=all(c.ok for c in checks), checks=checks)


def _database_checks(settings: Settings) -> list[Check]:
    try:
        with get_engine(settings.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
            current = current_revisions(conn)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type says which
        failed = f"cannot query the database ({type(exc).__name__})"
        return [
            Check(name="database", ok=False, detail=failed),
            Check(name="migrations", ok=False, detail=failed),
        ]
    heads = head_revisions()
    if current == heads:
        migrations = Check(name="migrations", ok=True, detail=f"at head {', '.join(sorted(heads))}")
    else:
        shown = ", ".join(sorted(current)) or "none"
        migrations = Check(
            name="migrations",
            ok=False,
            detail=f"database at {shown}, code at {', '.join(sorted(heads))}: run `newsletter db upgrade`",
        )
    return [Check(name="database", ok=True, detail="reachable"), migrations]


def _broker_check(settings: Settings) -> Check:
    if not settings.uses_broker:
        return Check(name="broker", ok=True, detail="none configured: jobs run in the web process")
    timeout = settings.worker_ping_timeout_seconds
    try:
        with Connection(settings.broker_url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - kombu's and the transports' errors are many
        return Check(name="broker", ok=False, detail=f"cannot connect ({type(exc).__name__})")
    return Check(name="broker", ok=True, detail="reachable")


def _heartbeat_checks(settings: Settings) -> list[Check]:
    if not settings.uses_broker:
        none = "no broker: no worker or beat to check"
        return [Check(name="worker", ok=True, detail=none), Check(name="beat", ok=True, detail=none)]
    try:
        ages = liveness.heartbeat_ages(settings)
    except redis.RedisError as exc:
        failed = f"cannot read heartbeats from Redis ({type(exc).__name__})"
        return [Check(name="worker", ok=False, detail=failed), Check(name="beat", ok=False, detail=failed)]
    if ages is None:
        missing = "heartbeats need Redis: a redis:// broker or NEWSLETTER_REDIS_URL"
        return [Check(name="worker", ok=False, detail=missing), Check(name="beat", ok=False, detail=missing)]
    limit = settings.heartbeat_max_age_seconds
    return [
        _age_check("worker", liveness.newest(ages, "worker:"), limit, "celery -A workers worker"),
        _age_check("beat", liveness.newest(ages, "beat"), limit, "celery -A workers beat"),
    ]


def _age_check(name: str, age: float | None, limit: int, start: str) -> Check:
    if age is None:
        return Check(name=name, ok=False, detail=f"no heartbeat ever recorded: is `{start}` running?")
    if age > limit:
        # Rounded up: a heartbeat 3.04 s old against a 3 s limit must not read "3 s (limit 3 s)".
        return Check(
            name=name,
            ok=False,
            detail=f"last heartbeat {math.ceil(age)} s ago (limit {limit} s): is `{start}` running?",
            age_seconds=math.ceil(age * 10) / 10,
        )
    return Check(name=name, ok=True, detail=f"heartbeat {age:.0f} s ago", age_seconds=round(age, 1))
