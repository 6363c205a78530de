"""Sliding-window rate limits: in memory for one process, in Redis when several share the load."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque

from newsletter.config import Settings

log = logging.getLogger("newsletter.ratelimit")


class MemoryLimiter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, limit: int, window: int) -> bool:
        """Count one attempt on `key`; False if `limit` attempts were allowed in the last `window` s."""
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > 100_000:  # forget idle keys so memory stays bounded
                self._hits = {k: q for k, q in self._hits.items() if q and q[-1] > now - window}
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            return True


# Count and add in one step: read-then-write from several requests at once would let a burst
# through (each one sees room for itself). Redis runs a script atomically.
_SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return 1
"""


class RedisLimiter:
    """The same sliding window in a Redis sorted set, shared by every web process."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._errors = (redis.RedisError, OSError)
        self._allow = self._redis.register_script(_SLIDING_WINDOW)

    def allow(self, key: str, limit: int, window: int) -> bool:
        name, now = f"newsletter:rl:{key}", time.time()
        member = f"{now}:{uuid.uuid4().hex[:8]}"
        try:
            return bool(self._allow(keys=[name], args=[repr(now), window, limit, member]))
        except self._errors:
            # Fail open: a Redis outage must not take signups down (the per-address cooldown
            # in the database still limits confirmation emails).
            log.warning("ratelimit.unavailable", extra={"key": key})
            return True


def make_limiter(settings: Settings) -> MemoryLimiter | RedisLimiter:
    url = settings.limits_redis_url
    return RedisLimiter(url) if url else MemoryLimiter()
