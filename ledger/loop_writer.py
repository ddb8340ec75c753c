"""Group commit for callers on an event loop, done by a task on that same loop.

The writer thread of `group_commit` serves callers on threads. A caller on an event loop
(the API's POST of a raw lot) handed to that thread paid for the hand-offs: the writer
waking, the interpreter lock passing between it and the loop, the loop's self-pipe
written once per batch. Here a task on the caller's own loop takes every append that
loop has queued and records them with one call of the same append function on its own
connection: the same table lock and so the same gap-free order, the same one commit per
batch, a future resolved where it was created. The two writers' batches simply queue
for the lock.

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
from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError
from psycopg.types.composite import CompositeInfo, register_composite

from ledger.appends import (
    MAX_BATCH,
    Append,
    BatchConflict,
    WriterStats,
    fail,
    hand_out,
    on_clash,
    pg_events,
)


class LoopWriter:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        connect_kwargs: dict[str, Any],
        composite: CompositeInfo,
        append_sql: str,
        stats: WriterStats,
        on_exit: Callable[[LoopWriter], None],
    ) -> None:
        self._connect_kwargs = connect_kwargs
        self._composite = composite
        self._append_sql = append_sql
        self._stats = stats
        self._queue: deque[Append] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
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
                while self._queue:
                    count = min(MAX_BATCH, len(self._queue))
                    await self._commit([self._queue.popleft() for _ in range(count)])
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()

    async def _commit(self, batch: list[Append]) -> None:
        started = time.perf_counter()
        try:
            try:
                await self._commit_together(batch)
            except BatchConflict:
                await self._commit_each_under_savepoint(batch)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            # The API answers these with 503. Nothing of the batch was committed, unless the
            # connection broke between the commit and its answer: then a retry finds the
            # lot code taken (409), as with the writer thread.
            fail(batch, OperationalError(str(e)))
            await self._drop_connection()
        except Exception as e:  # noqa: BLE001 - every waiting caller must be woken
            fail(batch, e if isinstance(e, PersistenceError) else PersistenceError(str(e)))
            await self._drop_connection()
        self._stats.record(len(batch), time.perf_counter() - started)
        for append in batch:
            future = append.done.future  # type: ignore[union-attr]
            if not future.done():
                future.set_result(None)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(**self._connect_kwargs, autocommit=True)
            register_composite(self._composite, conn)
            self._conn = conn
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _append(
        self, conn: psycopg.AsyncConnection[Any], appends: Sequence[Append]
    ) -> list[int]:
        events = pg_events(self._composite.python_type, appends)  # type: ignore[arg-type]
        cursor = await conn.execute(self._append_sql, (events,), prepare=True)
        return [row[0] for row in await cursor.fetchall()]

    async def _commit_together(self, batch: list[Append]) -> None:
        conn = await self._connection()
        try:
            ids = await self._append(conn, batch)
        except psycopg.errors.UniqueViolation as e:
            on_clash(batch, e)
            return
        hand_out(batch, ids)

    async def _commit_each_under_savepoint(self, batch: list[Append]) -> None:
        conn = await self._connection()
        async with conn.transaction():
            for append in batch:
                try:
                    async with conn.transaction():
                        append.ids = await self._append(conn, [append])
                except psycopg.errors.UniqueViolation as e:
                    append.error = IntegrityError(str(e))
