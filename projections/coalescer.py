"""Concurrent look-ups share one statement: the read-side counterpart of group commit.

Under load most of a look-up's cost is the Python around its round trip (pool checkout,
protocol, result decoding), not PostgreSQL's work. Look-ups that arrive while the event
loop is busy are collected and answered by one `= ANY(...)` statement when it turns.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        self._fetch = fetch
        # Per event loop: a future must be resolved on the loop it belongs to.
        self._waiting: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[K, list[asyncio.Future[V | None]]]
        ] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[V | None] = loop.create_future()
        waiting = self._waiting.setdefault(loop, {})
        if not waiting:
            # After every request already runnable has had its turn to join this one.
            loop.call_soon(self._flush, loop)
        waiting.setdefault(key, []).append(answer)
        return await answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop, {})
        task = loop.create_task(self._answer(waiting))
        self._tasks.add(task)  # a reference, or the task may be collected mid-flight
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, waiting: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch(list(waiting))
        except BaseException as e:  # every waiter gets the failure, nobody hangs
            for answers in waiting.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for key, answers in waiting.items():
            for answer in answers:
                if not answer.done():
                    answer.set_result(found.get(key))
