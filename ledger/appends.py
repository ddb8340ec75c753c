"""What both group-commit writers pass around: a caller's append and how it is awaited."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)

MAX_BATCH = 512


class BatchConflict(Exception):
    """Some request in the batch clashed; retry the batch one savepoint per request."""


class Done:
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


class Awaited:
    """The same signal for a caller on an event loop: a future of that loop, resolved by
    the writer task on the same loop."""

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()


@dataclass
class Append:
    events: Sequence[StoredEvent]
    done: Done | Awaited = field(default_factory=Done)
    ids: list[int] | None = None
    error: Exception | None = None


@dataclass
class WriterStats:
    """What the writers have done: how they batch, and how much of their time they are busy."""

    batches: int = 0
    appends: int = 0
    busy_seconds: float = 0.0
    # The writer thread and the loops' writer tasks record from different threads.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, appends: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.appends += appends
            self.busy_seconds += seconds


def on_clash(batch: list[Append], error: Exception) -> None:
    """A unique violation in a batch: a lone append is refused; a batch retries each of
    its appends under a savepoint, so that one request's clash never fails another's."""
    if len(batch) > 1:
        raise BatchConflict from error
    batch[0].error = IntegrityError(str(error))


def hand_out(batch: list[Append], ids: list[int]) -> None:
    """The batch's positions, in order, to the appends they belong to."""
    offset = 0
    for append in batch:
        append.ids = ids[offset : offset + len(append.events)]
        offset += len(append.events)


def fail(batch: list[Append], error: Exception) -> None:
    """A batch that did not commit: each of its callers raises `error`, as the ledger's
    persistence error. A broken connection is an `OperationalError`: nothing of the batch
    was committed, unless the connection broke between the commit and its answer, which
    the ledger tells by sending the same events once more (a clash with themselves)."""
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        error = OperationalError(str(error))
    elif not isinstance(error, PersistenceError):
        error = PersistenceError(str(error))
    for append in batch:
        append.ids = None
        if append.error is None:
            append.error = error
