"""Single-use tokens: a signed webhook call whose token was seen before is a replay.

In Redis (`Settings.limits_redis_url`) when several web processes share the load; in this
process's memory otherwise. A token is remembered for as long as its timestamp is accepted,
after which the timestamp check refuses it anyway.
"""

from __future__ import annotations

import threading
import time

import redis

from newsletter.config import Settings

MEMORY_TOKENS = 100_000


class Unavailable(Exception):
    """The token store cannot answer: refuse for now (503) so that the provider retries."""


class MemoryTokens:
    def __init__(self, max_tokens: int = MEMORY_TOKENS) -> None:
        self._expiry: dict[str, float] = {}
        self._max = max_tokens
        self._lock = threading.Lock()

    def first_use(self, token: str, ttl: int) -> bool:
        """Remember `token` for `ttl` seconds; False if it was already remembered."""
        now = time.monotonic()
        with self._lock:
            if self._expiry.get(token, 0.0) > now:
                return False
            if len(self._expiry) >= self._max:
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            self._expiry[token] = now + ttl
            return True


class RedisTokens:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def first_use(self, token: str, ttl: int) -> bool:
        """Remember `token` for `ttl` seconds (SET NX: one step, so two calls at once cannot both
        be first); False if it was already remembered; Unavailable if Redis does not answer."""
        try:
            return bool(self._redis.set(f"newsletter:webhook-token:{token}", b"1", nx=True, ex=ttl))
        except (redis.RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from exc


def make_token_store(settings: Settings) -> MemoryTokens | RedisTokens:
    url = settings.limits_redis_url
    return RedisTokens(url) if url else MemoryTokens()
