"""Group commit: one writer saves the events of many concurrent requests in one transaction.

The library's recorder takes `LOCK TABLE ... IN EXCLUSIVE MODE` in every append so that
notification ids commit in order (readers never skip a gap that fills later). That keeps
the order gap-free but caps appends at one commit (one fsync) at a time. Here one writer
thread per process takes every append waiting in its queue, and records them all under
one lock and one commit: the same ordering guarantee, the same durability (a caller
returns only after the commit), many appends per fsync.

Each request's events go in under a savepoint of their own only when the batch as a
whole meets a conflict, so one request's version clash never fails another's append.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.errors
from eventsourcing.persistence import (
    IntegrityError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from ledger.event_store import SETUP_LOCK, SETUP_UNLOCK
from ledger.hash_chain import ADD_COLUMNS, APPEND_FUNCTION, HAS_COLUMNS, SEAL_UNHASHED

log = logging.getLogger(__name__)

MAX_BATCH = 512


class _BatchConflict(Exception):
    """Some request in the batch clashed; retry the batch one savepoint per request."""


class _Done:
    """Set once by the writer, waited on once by the caller: a bare lock does both in C,
    where an Event's condition runs Python under the interpreter lock the writer needs."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


class _Awaited:
    """The same signal for a caller on an event loop: a future of that loop. The writer wakes
    each loop once per batch (see `_wake`), not once per caller: every wake-up from another
    thread is a write to the loop's self-pipe."""

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()


@dataclass
class _Append:
    events: Sequence[StoredEvent]
    done: _Done | _Awaited = field(default_factory=_Done)
    ids: list[int] | None = None
    error: Exception | None = None


@dataclass
class WriterStats:
    """What the writer has done: how it batches, and how much of its time it is busy."""

    batches: int = 0
    appends: int = 0
    busy_seconds: float = 0.0


class GroupCommitRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self.stats = WriterStats()
        append_function = Identifier(f"{self.events_table_name}_append")
        self._add_hash_columns = SQL(ADD_COLUMNS).format(
            schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name)
        )
        self._create_append_function = SQL(APPEND_FUNCTION).format(
            schema=Identifier(self.datastore.schema),
            function=append_function,
            type=Identifier(self.stored_event_type_name),
            table=Identifier(self.events_table_name),
            channel=Identifier(self.channel_name),
            timeout=SQL(str(int(self.datastore.lock_timeout))),
        )
        # Binary: the events' state (bytea) goes as bytes, not escaped into text. Rendered
        # once: composing it again for every batch cost the writer 8% of its time.
        self._append_all = (
            SQL("SELECT notification_id FROM {schema}.{function}(%b)")
            .format(schema=Identifier(self.datastore.schema), function=append_function)
            .as_string()
        )

    def create_table(self) -> None:
        # The library replaces its own function on every start too: one process at a time.
        with self.datastore.get_connection() as lock:
            lock.execute(SETUP_LOCK)
            try:
                super().create_table()
                with self.datastore.transaction(commit=True) as curs:
                    if not self._has_hash_columns(curs):
                        self._add_and_seal(curs)
                    curs.execute(self._create_append_function)
            finally:
                lock.execute(SETUP_UNLOCK)

    def _has_hash_columns(self, curs: Any) -> bool:
        row = curs.execute(HAS_COLUMNS, (self.datastore.schema, self.events_table_name)).fetchone()
        return bool(row["present"])

    def _add_and_seal(self, curs: Any) -> None:
        names = {
            "schema": Identifier(self.datastore.schema),
            "table": Identifier(self.events_table_name),
        }
        curs.execute(SQL("ALTER TABLE {schema}.{table} DISABLE TRIGGER USER").format(**names))
        curs.execute(self._add_hash_columns)
        curs.execute(SQL(SEAL_UNHASHED).format(**names))
        curs.execute(SQL("ALTER TABLE {schema}.{table} ENABLE TRIGGER USER").format(**names))

    # --- callers' side -----------------------------------------------------------------

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        if kwargs.get("tracking") is not None:
            # The library's own path would write rows without hashes, which verify then
            # reports as inserted; the ledger runs no process application that needs it.
            raise ProgrammingError("the ledger's event log records no tracking")
        append = _Append(stored_events)
        self._enqueue(append)
        append.done.wait()  # type: ignore[union-attr]
        if append.error is not None:
            raise append.error
        return append.ids

    async def insert_events_async(self, stored_events: Sequence[StoredEvent]) -> Sequence[int]:
        """`insert_events` for a caller on an event loop: it awaits the same commit without
        holding a thread, where a thread hop would cost about what the append itself does."""
        if not stored_events:
            return []
        append = _Append(stored_events, _Awaited(asyncio.get_running_loop()))
        self._enqueue(append)
        # Shielded: once queued, the append commits or fails whatever becomes of the caller.
        await asyncio.shield(append.done.future)  # type: ignore[union-attr]
        if append.error is not None:
            raise append.error
        assert append.ids is not None
        return append.ids

    def _enqueue(self, append: _Append) -> None:
        with self._writer_lock:
            if self._closed:
                raise PersistenceError("the ledger is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_forever, name="group-commit", daemon=True
                )
                self._writer.start()
            # Queued under the lock, so nothing can land behind close_writer's sentinel.
            self._queue.put(append)

    def close_writer(self) -> None:
        """Lets the writer commit what is queued, then refuses further appends."""
        with self._writer_lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join(10)

    # --- the writer --------------------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Append]) -> None:
        started = time.perf_counter()
        try:
            try:
                self._commit_together(batch)
            except _BatchConflict:
                self._commit_each_under_savepoint(batch)
        except Exception as e:  # noqa: BLE001 - every waiting caller must be woken
            self._fail(batch, e if isinstance(e, PersistenceError) else PersistenceError(str(e)))
        self.stats.batches += 1
        self.stats.appends += len(batch)
        self.stats.busy_seconds += time.perf_counter() - started
        _wake(batch)

    @staticmethod
    def _fail(batch: list[_Append], error: Exception) -> None:
        for append in batch:
            append.ids = None
            if append.error is None:
                append.error = error

    def _append(self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> list[int]:
        rows = conn.execute(
            self._append_all,
            ([self.construct_pg_stored_event(
                e.originator_id, e.originator_version, e.topic, e.state) for e in events],),
            prepare=True,
        ).fetchall()
        return [row["notification_id"] for row in rows]

    def _commit_together(self, batch: list[_Append]) -> None:
        events = [
            self.construct_pg_stored_event(
                e.originator_id, e.originator_version, e.topic, e.state
            )
            for append in batch
            for e in append.events
        ]
        with self.datastore.get_connection() as conn:
            try:
                # Lock, insert, notify and commit in one round trip (see create_table).
                rows = conn.execute(self._append_all, (events,), prepare=True).fetchall()
                ids = [row["notification_id"] for row in rows]
            except psycopg.errors.UniqueViolation as e:
                if len(batch) == 1:
                    batch[0].error = IntegrityError(str(e))
                    return
                raise _BatchConflict from e
        offset = 0
        for append in batch:
            append.ids = ids[offset : offset + len(append.events)]
            offset += len(append.events)

    def _commit_each_under_savepoint(self, batch: list[_Append]) -> None:
        with self.datastore.get_connection() as conn, conn.transaction():
            for append in batch:
                try:
                    # A savepoint: a clash undoes this append only. The first call takes
                    # the table lock, held until the one commit.
                    with conn.transaction():
                        append.ids = self._append(conn, append.events)
                except psycopg.errors.UniqueViolation as e:
                    append.error = IntegrityError(str(e))


def _wake(batch: list[_Append]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for append in batch:
        if isinstance(append.done, _Done):
            append.done.set()
        else:
            by_loop.setdefault(append.done.loop, []).append(append.done.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures)
        except RuntimeError:  # that loop has closed: nobody is left waiting on it
            pass


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
