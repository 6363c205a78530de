"""Sliding-window rate limits: in memory for one process, in Redis when several share the load."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque

from newsletter.config import Settings


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


class RedisLimiter:
    """The same sliding window in a Redis sorted set, shared by every web process."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2)

    def allow(self, key: str, limit: int, window: int) -> bool:
        name, now = f"newsletter:rl:{key}", time.time()
        pipe = self._redis.pipeline()
        pipe.zremrangebyscore(name, 0, now - window)
        pipe.zcard(name)
        _, count = pipe.execute()
        if int(count) >= limit:
            return False
        pipe = self._redis.pipeline()
        pipe.zadd(name, {f"{now}:{uuid.uuid4().hex[:8]}": now})
        pipe.expire(name, window + 1)
        pipe.execute()
        return True


def make_limiter(settings: Settings) -> MemoryLimiter | RedisLimiter:
    url = settings.redis_url or (settings.broker_url if (settings.broker_url or "").startswith(
        "redis") else None)
    return RedisLimiter(url) if url else MemoryLimiter()
