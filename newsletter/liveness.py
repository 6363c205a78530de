"""Are the workers and beat alive? A ping before waiting on workers, and heartbeats in Redis.

`send --now` asks the workers to answer a Celery control ping before it waits on them, so it
stops at once when nobody would send. Workers (a timer in each worker process) and beat (its
scheduler, on each tick) write a timestamp under `HEARTBEATS` in Redis; readiness and /metrics
read their ages.
"""

from __future__ import annotations

import time

import redis
from kombu.exceptions import OperationalError as BrokerError
from kombu.utils.url import maybe_sanitize_url

from newsletter.config import Settings
from newsletter.errors import OperatorError
from newsletter.worker import publisher

HEARTBEATS = "newsletter:heartbeats"  # a Redis hash: "worker:<node name>" or "beat" -> unix time
START_WORKER = "celery -A workers worker --loglevel=INFO"
FORGET_AFTER = 7 * 24 * 3600  # a worker node silent this long is dropped from the hash


def shown_broker(settings: Settings) -> str:
    """The broker URL with any password masked, for messages."""
    return str(maybe_sanitize_url(settings.broker_url or ""))


def ping_workers(settings: Settings, timeout: float | None = None) -> list[str]:
    """The node names of the workers that answered a ping within `timeout` seconds (default
    `worker_ping_timeout_seconds`); an unreachable broker is an `OperatorError`."""
    timeout = settings.worker_ping_timeout_seconds if timeout is None else timeout
    app = publisher(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            replies = app.control.ping(timeout=timeout, connection=conn) or []
    except (BrokerError, OSError) as exc:
        raise OperatorError(f"cannot reach the broker at {shown_broker(settings)}: {exc}") from exc
    return sorted(name for reply in replies for name in reply)


NO_WAIT_HINT = "or pass --no-wait to queue this send for when one starts"


def require_worker(settings: Settings, then: str = NO_WAIT_HINT) -> list[str]:
    """The workers that answered a ping; none is an `OperatorError` saying how to start one,
    and `then` what else the operator can do."""
    workers = ping_workers(settings)
    if not workers:
        raise OperatorError(
            f"no worker answered a ping on {shown_broker(settings)} within "
            f"{settings.worker_ping_timeout_seconds:g} s: start one with `{START_WORKER}` "
            f"(same settings), {then}"
        )
    return workers


# ---- heartbeats -----------------------------------------------------------------------------


def _redis(settings: Settings) -> redis.Redis | None:
    url = settings.limits_redis_url
    return (
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
        if url
        else None
    )


def record_heartbeat(settings: Settings, who: str, now: float | None = None) -> None:
    """Note that `who` ("worker:<node>" or "beat") is alive now; without Redis, nothing."""
    client = _redis(settings)
    if client is not None:
        with client:
            client.hset(HEARTBEATS, who, f"{time.time() if now is None else now:.3f}")


def heartbeat_ages(settings: Settings, now: float | None = None) -> dict[str, float] | None:
    """Seconds since each recorded heartbeat, by who ("worker:<node>", "beat"); None without
    Redis. Workers silent for a week are forgotten."""
    client = _redis(settings)
    if client is None:
        return None
    now = time.time() if now is None else now
    with client:
        raw = client.hgetall(HEARTBEATS)
        ages = {str(k): max(0.0, now - float(v)) for k, v in raw.items()}
        gone = [k for k, age in ages.items() if k.startswith("worker:") and age > FORGET_AFTER]
        if gone:
            client.hdel(HEARTBEATS, *gone)
    return {k: age for k, age in ages.items() if k not in gone}


def newest(ages: dict[str, float], prefix: str) -> float | None:
    """The youngest age among heartbeats whose name starts with `prefix`, or None if none."""
    found = [age for who, age in ages.items() if who.startswith(prefix)]
    return min(found) if found else None
