"""How far the projector has got, as seen from any process: read-your-writes waits on it.

It listens for the projector's commit notifications as a task on the serving process's
event loop (`start_on_loop`), where the POSTs that wait on it run: a thread of its own
would take the interpreter lock from that loop on every projected batch. Threads may
wait on it too (`wait_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import psycopg

from projections.projector import (
    DEFAULT_PROJECTION,
    PROJECTED_CHANNEL,
    read_position_async,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
APPLICATION_NAME = "flowviz-watermark"  # how pg_stat_activity names the listener


def _resolve(reached: list[asyncio.Future]) -> None:
    for future in reached:
        if not future.done():
            future.set_result(True)


def _expire(reached: asyncio.Future) -> None:
    if not reached.done():
        reached.set_result(False)


class ProjectionWatermark:
    """Listens for the projector's commit notifications; wakes whoever waits for a position."""

    def __init__(self, conninfo: str, schema: str, name: str = DEFAULT_PROJECTION) -> None:
        self.conninfo = conninfo
        self.prefix = f"{schema}:{name}:"
        self.name = name
        self._position = 0
        self._changed = threading.Condition()
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._sync_waiters = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def position(self) -> int:
        return self._position

    async def start_on_loop(self) -> None:
        """Listen on the running event loop; wait (up to five seconds) until the listener
        has read the position it starts from."""
        listening = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._listen_on_loop(listening))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait(), 5)

    async def stop_on_loop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def wait_for(self, position: int, timeout: float) -> bool:
        """True once the read tables include `position`; False when `timeout` passes first."""
        with self._changed:
            self._sync_waiters += 1
            try:
                return self._changed.wait_for(lambda: self._position >= position, timeout)
            finally:
                self._sync_waiters -= 1

    async def wait_for_async(self, position: int, timeout: float) -> bool:
        """As `wait_for`, without holding a thread while waiting."""
        if self._position >= position:
            return True
        loop = asyncio.get_running_loop()
        reached = loop.create_future()
        waiter = (position, loop, reached)
        with self._changed:
            if self._position >= position:
                return True
            self._async_waiters.append(waiter)
        # A timer that answers the same future, not `asyncio.wait_for`: that wraps the
        # future in a second one, resolved a loop turn later by a callback of the first,
        # on every POST's wait for its 201.
        expiry = loop.call_later(timeout, _expire, reached)
        try:
            return await reached
        finally:
            expiry.cancel()
            with self._changed:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)

    def _advance(self, position: int) -> None:
        due: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        with self._changed:
            if position > self._position:
                self._position = position
                self._changed.notify_all()
                due = [w for w in self._async_waiters if w[0] <= position]
                self._async_waiters = [w for w in self._async_waiters if w[0] > position]
        # One wake-up per event loop, not per waiter: each is a write to the loop's pipe.
        # Waiters on the loop this runs on (the loop's own listener) need none.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for _, loop, reached in due:
            by_loop.setdefault(loop, []).append(reached)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, reached in by_loop.items():
            if loop is running:
                _resolve(reached)
                continue
            try:
                loop.call_soon_threadsafe(_resolve, reached)
            except RuntimeError:  # the waiters' event loop has closed; nobody to wake
                pass

    def _awaited(self) -> bool:
        with self._changed:
            return bool(self._sync_waiters or self._async_waiters)

    async def _listen_on_loop(self, listening: asyncio.Event) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, application_name=APPLICATION_NAME
                )
                async with conn:
                    # Notifications that arrive while a query of ours runs reach this handler.
                    conn.add_notify_handler(lambda note: self._take(note.payload))
                    await conn.execute(f"LISTEN {PROJECTED_CHANNEL}")
                    # Read after LISTEN so no commit falls between the two.
                    self._advance(await read_position_async(conn, self.name))
                    listening.set()
                    await self._follow(conn)
            except Exception:  # noqa: BLE001 - this listener must outlive any one failure
                log.exception("watermark listener failed; reconnecting")
                await asyncio.sleep(1.0)

    async def _follow(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Reads notifications as the socket brings them, by a reader that stays on the
        loop. psycopg's `notifies()` adds and removes a reader and a timer for each one:
        about a tenth of a worker's time under POST load went to that (py-spy)."""
        loop = asyncio.get_running_loop()
        pgconn, fd = conn.pgconn, conn.pgconn.socket
        broken: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pgconn.consume_input()
                while (note := pgconn.notifies()) is not None:
                    self._take(note.extra.decode())
            except Exception as e:  # noqa: BLE001 - the connection is gone: reconnect
                loop.remove_reader(fd)
                if not broken.done():
                    broken.set_exception(e)

        loop.add_reader(fd, readable)
        try:
            while True:
                await asyncio.wait([broken], timeout=POLL_SECONDS)
                if broken.done():
                    broken.result()  # raises what broke it
                # Waiters must never hang on one lost notification: look anyway.
                if self._awaited():
                    loop.remove_reader(fd)  # the query reads the socket itself meanwhile
                    try:
                        self._advance(await read_position_async(conn, self.name))
                    finally:
                        loop.add_reader(fd, readable)
        finally:
            loop.remove_reader(fd)
            if broken.done():
                broken.exception()  # seen, even when a stop came before it was raised

    def _take(self, payload: str) -> None:
        position = payload.removeprefix(self.prefix)
        if position != payload and position.isdigit():
            self._advance(int(position))
