"""Fixed-window rate limits: in memory for one process, in Redis when several share the load."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from newsletter.config import Settings


class MemoryLimiter:
    def __init__(self) -> None:
        self._hits: dict[tuple[str, int], int] = defaultdict(int)
        self._lock = threading.Lock()

    def allow(self, key: str, limit: int, window: int) -> bool:
        """Count one hit on `key`; False once more than `limit` hits fall in this window."""
        slot = int(time.time() // window)
        with self._lock:
            if len(self._hits) > 100_000:  # old windows are never read again
                self._hits = defaultdict(int, {k: v for k, v in self._hits.items() if k[1] >= slot})
            self._hits[(key, slot)] += 1
            return self._hits[(key, slot)] <= limit


class RedisLimiter:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2)

    def allow(self, key: str, limit: int, window: int) -> bool:
        slot = int(time.time() // window)
        name = f"newsletter:rl:{key}:{slot}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window + 1)
        count, _ = pipe.execute()
        return int(count) <= limit


def make_limiter(settings: Settings) -> MemoryLimiter | RedisLimiter:
    url = settings.redis_url or (settings.broker_url if (settings.broker_url or "").startswith(
        "redis") else None)
    return RedisLimiter(url) if url else MemoryLimiter()
