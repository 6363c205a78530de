"""Sliding-window rate limits: in memory for one process, in Redis when several share the load.

Clients are counted by network (`client_key`): an IPv4 address, or the /64 an IPv6 address
belongs to, since one home line or server gets a whole /64.

The memory limiter counts for its own process only: with `newsletter serve --workers N` and no
Redis, a client gets up to N times each limit. When Redis does not answer, the Redis limiter
counts in this process's memory for REDIS_RETRY_SECONDS (one warning, `ratelimit.unavailable`)
and then tries Redis again: limits become per-process, never off, and no request waits on a
Redis that is down for longer than one timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import uuid
from bisect import bisect_right
from collections import OrderedDict

import redis

from newsletter.config import Settings
from newsletter.logs import event

log = logging.getLogger("newsletter.ratelimit")

MEMORY_KEYS = 100_000  # ~30 MB of windows at most; the least recently seen key goes first
REDIS_RETRY_SECONDS = 30.0
REDIS_TIMEOUT_SECONDS = 1.0  # a local Redis answers in well under a millisecond


def client_key(ip: str | None) -> str:
    """What a client is counted by: its IPv4 address, or its IPv6 address's /64 network
    (an IPv4-mapped IPv6 address counts as the IPv4 address)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return f"{ipaddress.IPv6Address(int(address) >> 64 << 64)}/64"
    return str(address)


class MemoryLimiter:
    """Sliding windows for at most `max_keys` keys, forgetting the least recently used first.

    Each call does O(1) work in the number of keys (an OrderedDict move or eviction) and at most
    O(limit) in its own window, under one lock.
    """

    def __init__(self, max_keys: int = MEMORY_KEYS) -> None:
        self._hits: OrderedDict[str, list[float]] = OrderedDict()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hits)

    def allow(self, key: str, limit: int, window: int) -> bool:
        """Count one attempt on `key`; False if `limit` attempts were allowed in the last `window` s."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = []
                if len(self._hits) > self._max_keys:
                    self._hits.popitem(last=False)
            else:
                self._hits.move_to_end(key)
            del hits[: bisect_right(hits, now - window)]
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
    """The same sliding window in a Redis sorted set, shared by every web process; in this
    process's memory while Redis is unreachable (see the module docstring)."""

    def __init__(self, url: str, retry_after: float = REDIS_RETRY_SECONDS) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._allow = self._redis.register_script(_SLIDING_WINDOW)
        self._fallback = MemoryLimiter()
        self._retry_after = retry_after
        self._down_until = 0.0  # time.monotonic() before which Redis is not tried

    def allow(self, key: str, limit: int, window: int) -> bool:
        if time.monotonic() < self._down_until:
            return self._fallback.allow(key, limit, window)
        name, now = f"newsletter:rl:{key}", time.time()
        member = f"{now}:{uuid.uuid4().hex[:8]}"
        try:
            return bool(self._allow(keys=[name], args=[repr(now), window, limit, member]))
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self._retry_after
            event(
                log,
                "ratelimit.unavailable",
                logging.WARNING,
                error=type(exc).__name__,
                counting="in process memory",
                retry_in_s=self._retry_after,
            )
            return self._fallback.allow(key, limit, window)


def make_limiter(settings: Settings) -> MemoryLimiter | RedisLimiter:
    url = settings.limits_redis_url
    return RedisLimiter(url) if url else MemoryLimiter()
