"""Group commit for callers on an event loop, done by a task on that same loop.

The writer thread of `group_commit` serves callers on threads. A caller on an event loop
(the API's POST of a raw lot) handed to that thread paid for the hand-offs: the writer
waking, the interpreter lock passing between it and the loop, the loop's self-pipe
written once per batch. Here a task on the caller's own loop takes every append that
loop has queued and records them with one call of the same append function on its own
connection: the same table lock and so the same gap-free order, the same one commit per
batch, a future resolved where it was created. The two writers' batches simply queue
for the lock.

Two batches may be in flight, each on its own connection. All of a loop's callers are
woken together when their batch commits and queue again together, so with one batch in
flight the loop builds the next batch while the database idles, then idles while the
database commits it. With two, the second waits for the table lock while the first
commits, and the first's callers build their next appends while the second commits.

Once queued, an append commits or fails whatever becomes of its caller: a client that
hangs up cancels its request, not the writer. Only the loop's own end cancels the
writer (the server waits for its requests first): psycopg then cancels the batch in
flight, which commits whole or not at all, and nobody was answered for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import psycopg.errors
from eventsourcing.persistence import IntegrityError

from ledger.appends import (
    MAX_BATCH,
    Append,
    BatchConflict,
    WriterStats,
    fail,
    hand_out,
    on_clash,
)
from ledger.prepared_append import PreparedAppend

IN_FLIGHT = 2
MIN_SECOND_BATCH = 8


class LoopWriter:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        connect_kwargs: dict[str, Any],
        append: PreparedAppend,
        stats: WriterStats,
        on_exit: Callable[[LoopWriter], None],
    ) -> None:
        self._connect_kwargs = connect_kwargs
        self._append_call = append
        self._stats = stats
        self._queue: deque[Append] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        # A connection per batch in flight; a slot is its index, listed here while free.
        self._conns: list[psycopg.AsyncConnection[Any] | None] = [None] * IN_FLIGHT
        self._free = list(range(IN_FLIGHT))
        self._in_flight: set[asyncio.Task[None]] = set()
        self.loop = loop
        self.task = loop.create_task(self._write_forever(), name="group-commit-loop")
        self.task.add_done_callback(lambda _: on_exit(self))

    def enqueue(self, append: Append) -> None:
        self._queue.append(append)
        self._wake.set()

    def stop(self) -> None:
        """Commit what is queued, then end (call on the writer's loop)."""
        self._stopping = True
        self._wake.set()

    async def _write_forever(self) -> None:
        try:
            while not (self._stopping and not self._queue):
                await self._wake.wait()
                self._wake.clear()
                while count := self._next_batch_size():
                    batch = [self._queue.popleft() for _ in range(count)]
                    self._send(self._free.pop(), batch)
            if self._in_flight:
                await asyncio.wait(self._in_flight)
        finally:
            for slot in range(IN_FLIGHT):
                await self._drop_connection(slot)

    def _next_batch_size(self) -> int:
        count = min(MAX_BATCH, len(self._queue))
        if not self._free:
            return 0
        if len(self._free) == IN_FLIGHT:
            # Nothing in flight: a large batch goes in two halves, so that one half commits
            # while the other half's callers build their next appends.
            return (count + 1) // 2 if count >= 2 * MIN_SECOND_BATCH else count
        # A batch in flight: a few appends wait for it rather than pay for a commit of
        # their own (the database's work per batch, the projector's wake-up).
        return count if count >= MIN_SECOND_BATCH else 0

    def _send(self, slot: int, batch: list[Append]) -> None:
        task = self.loop.create_task(self._commit(batch, slot))
        self._in_flight.add(task)

        def freed(_: asyncio.Task[None]) -> None:
            self._in_flight.discard(task)
            self._free.append(slot)
            self._wake.set()

        task.add_done_callback(freed)

    async def _commit(self, batch: list[Append], slot: int) -> None:
        started = time.perf_counter()
        try:
            try:
                await self._commit_together(batch, slot)
            except BatchConflict:
                await self._commit_each_under_savepoint(batch, slot)
        except Exception as e:  # noqa: BLE001 - every waiting caller must be woken
            # A broken connection fails the batch as OperationalError (see `fail`); the API
            # answers a second failure with 503.
            fail(batch, e)
            await self._drop_connection(slot)
        self._stats.record(len(batch), time.perf_counter() - started)
        for append in batch:
            future = append.done.future  # type: ignore[union-attr]
            if not future.done():
                future.set_result(None)

    async def _connection(self, slot: int) -> psycopg.AsyncConnection[Any]:
        conn = self._conns[slot]
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(**self._connect_kwargs, autocommit=True)
            # Kept before it is prepared: a failure there drops it like any other.
            self._conns[slot] = conn
            await self._append_call.prepare_async(conn)
        return conn

    async def _drop_connection(self, slot: int) -> None:
        conn, self._conns[slot] = self._conns[slot], None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _append(
        self, conn: psycopg.AsyncConnection[Any], appends: Sequence[Append]
    ) -> list[int]:
        return await self._append_call.call_async(conn, appends)

    async def _commit_together(self, batch: list[Append], slot: int) -> None:
        conn = await self._connection(slot)
        try:
            ids = await self._append(conn, batch)
        except psycopg.errors.UniqueViolation as e:
            on_clash(batch, e)
            return
        hand_out(batch, ids)

    async def _commit_each_under_savepoint(self, batch: list[Append], slot: int) -> None:
        conn = await self._connection(slot)
        async with conn.transaction():
            for append in batch:
                try:
                    async with conn.transaction():
                        append.ids = await self._append(conn, [append])
                except psycopg.errors.UniqueViolation as e:
                    append.error = IntegrityError(str(e))
