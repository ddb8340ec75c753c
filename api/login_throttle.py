"""Slows password guessing: after repeated failed logins from one client for one e-mail,
further attempts are refused for a while. Redis holds the counts when configured, so
every worker and every API process sees the same ones."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class LoginThrottle(Protocol):
    def retry_after(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when it may try now."""

    def failed(self, key: str) -> None: ...

    def succeeded(self, key: str) -> None: ...


class RedisLoginThrottle:
    def __init__(self, client: redis.Redis, *, prefix: str, max_failures: int, window: int):
        self.client = client
        self.prefix = prefix
        self.max_failures = max_failures
        self.window = window

    def _key(self, key: str) -> str:
        return f"{self.prefix}:login-failures:{key}"

    def retry_after(self, key: str) -> int:
        name = self._key(key)
        failures, ttl = self.client.pipeline().get(name).ttl(name).execute()
        if failures is not None and int(failures) >= self.max_failures:
            return max(int(ttl), 1)
        return 0

    def failed(self, key: str) -> None:
        name = self._key(key)
        # The window starts at the first failure and is not extended by later ones.
        self.client.pipeline().incr(name).expire(name, self.window, nx=True).execute()

    def succeeded(self, key: str) -> None:
        self.client.delete(self._key(key))


class MemoryLoginThrottle:
    """For a single process without Redis (development, demo)."""

    def __init__(self, *, max_failures: int, window: int) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _current(self, key: str) -> tuple[int, float]:
        count, started = self._failures.get(key, (0, 0.0))
        if time.monotonic() - started >= self.window:
            return 0, time.monotonic()
        return count, started

    def retry_after(self, key: str) -> int:
        with self._lock:
            count, started = self._current(key)
            if count >= self.max_failures:
                return max(int(self.window - (time.monotonic() - started)), 1)
            return 0

    def failed(self, key: str) -> None:
        with self._lock:
            count, started = self._current(key)
            if len(self._failures) > 100_000:
                self._failures.clear()
            self._failures[key] = (count + 1, started)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
