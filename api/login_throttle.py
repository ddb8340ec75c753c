"""Slows password guessing: a client gets a fixed number of login attempts for one e-mail
per window unless one succeeds. Every attempt is counted before the password is checked,
so parallel guesses cannot slip past the count. Redis holds the counts when configured,
so every worker and every API process sees the same ones."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class LoginThrottle(Protocol):
    def attempt(self, key: str) -> int:
        """Counts an attempt; 0 if it may go ahead, else the seconds to wait."""

    def succeeded(self, key: str) -> None: ...


class RedisLoginThrottle:
    def __init__(self, client: redis.Redis, *, prefix: str, max_failures: int, window: int):
        self.client = client
        self.prefix = prefix
        self.max_failures = max_failures
        self.window = window

    def _key(self, key: str) -> str:
        return f"{self.prefix}:login-attempts:{key}"

    def attempt(self, key: str) -> int:
        name = self._key(key)
        # The window starts at the first attempt and is not extended by later ones.
        count, _, ttl = (
            self.client.pipeline().incr(name).expire(name, self.window, nx=True).ttl(name)
            .execute()
        )
        return max(int(ttl), 1) if int(count) > self.max_failures else 0

    def succeeded(self, key: str) -> None:
        self.client.delete(self._key(key))


class MemoryLoginThrottle:
    """For a single process without Redis (development, demo)."""

    def __init__(self, *, max_failures: int, window: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self._attempts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def attempt(self, key: str) -> int:
        now = time.monotonic()
        with self._lock:
            count, started = self._attempts.get(key, (0, now))
            if now - started >= self.window:
                count, started = 0, now
            if len(self._attempts) > 100_000:
                self._attempts.clear()
            self._attempts[key] = (count + 1, started)
            if count + 1 > self.max_failures:
                return max(int(self.window - (now - started)), 1)
            return 0

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._attempts.pop(key, None)
