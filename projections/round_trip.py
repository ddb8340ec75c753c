"""Statements sent through libpq in one pipeline and read back at one sync.

A projector's batch is a handful of statements (BEGIN, an insert per table, the tracking
row's move, COMMIT, the read of the next batch) that are the same every time. Through
psycopg's pipeline each of them passed its cursor, query conversion, parameter dumping
and prepared-statement bookkeeping, and went to the socket in a write of its own (seven
writes and backend wake-ups a batch): the per-batch half of the projector's CPU under a
live load, whose batches are a dozen lots. Here each statement is prepared once per
connection under a name of its own, its parameters go as text, the whole round trip is
one write, and a result is read only where one is wanted. The ledger's writers call the
append function through libpq in the same way (`ledger/prepared_append.py`).
"""

from __future__ import annotations

import hashlib
import struct
import weakref
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification
from psycopg import generators
from psycopg.errors import error_from_result
from psycopg.pq import ExecStatus, Format, PGresult

_INT8 = struct.Struct("!q")
_UUID_OID = 2950

# Names prepared on each connection. Prepared statements live as long as the session, so
# the names are kept per connection object, which the pool keeps as long as its session.
_prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = (
    weakref.WeakKeyDictionary()
)


@lru_cache(maxsize=256)
def _statement(sql: str) -> tuple[bytes, bytes]:
    """The statement's name and its text with libpq's `$n` for psycopg's `%s`."""
    if "%%" in sql or "%(" in sql or "%b" in sql or "%t" in sql:
        raise ValueError(f"only %s placeholders go through a round trip: {sql}")
    parts = sql.split("%s")
    text = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
    return b"fv_" + hashlib.sha1(text.encode()).hexdigest()[:20].encode(), text.encode()


def _text(value: object) -> bytes | None:
    """A parameter as PostgreSQL's input function for its column reads it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int | Decimal | UUID):
        return str(value).encode()
    if isinstance(value, datetime | date):
        return value.isoformat().encode()
    raise TypeError(f"no text form for a {type(value).__name__} parameter")


class RoundTrip:
    """Collects statements, then sends them in one pipeline and reads them back at one
    sync. The first statement that fails raises psycopg's own exception for it (so its
    `sqlstate` tells what failed); those after it were not run."""

    def __init__(self) -> None:
        self._sends: list[tuple[str, Sequence[Any], bool]] = []

    def execute(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> int:
        """Queues a statement; its result is `run()`'s item at the index returned."""
        self._sends.append((sql, params, binary))
        return len(self._sends) - 1

    def run(self, conn: psycopg.Connection[Any]) -> list[PGresult]:
        pgconn = conn.pgconn
        known = _prepared.setdefault(conn, set())
        preparing: list[bytes] = []
        commands = []  # per command sent: the name it prepares, or None for a statement
        pgconn.enter_pipeline_mode()
        try:
            for sql, params, binary in self._sends:
                name, text = _statement(sql)
                if name not in known and name not in preparing:
                    pgconn.send_prepare(name, text)
                    preparing.append(name)
                    commands.append(name)
                pgconn.send_query_prepared(
                    name, [_text(p) for p in params],
                    result_format=Format.BINARY if binary else Format.TEXT,
                )
                commands.append(None)
            pgconn.pipeline_sync()
            results = conn.wait(_sent_and_read(pgconn))
            pgconn.exit_pipeline_mode()
        except BaseException:
            # A connection left in pipeline mode or halfway through a reply is of no
            # further use: closed, the pool replaces it.
            conn.close()
            raise
        answers, failure = [], None
        for prepares, result in zip(commands, results, strict=True):
            if result.status == ExecStatus.FATAL_ERROR and failure is None:
                failure = result
            elif prepares is not None and result.status == ExecStatus.COMMAND_OK:
                known.add(prepares)
            elif prepares is None:
                answers.append(result)
        if failure is not None:
            error = error_from_result(failure, encoding=conn.info.encoding)
            if error.sqlstate == "26000":  # a prepared name gone (DISCARD ALL): start over
                known.clear()
            raise error
        return answers


def _sent_and_read(pgconn: Any) -> generators.PQGen[list[PGresult]]:
    """Flushes the pipeline, then reads every command's result up to the sync (one per
    command: a failed pipeline answers the commands after the failure as aborted)."""
    yield from generators.send(pgconn)
    results: list[PGresult] = []
    last: PGresult | None = None
    while True:
        result = yield from generators.fetch(pgconn)
        if result is None:  # the end of one command's results
            if last is not None:
                results.append(last)
            last = None
        elif result.status == ExecStatus.PIPELINE_SYNC:
            return results
        else:
            last = result


def notifications_from(result: PGresult) -> list[Notification]:
    """The rows of `notification_id, originator_id, originator_version, topic, state`,
    read in binary."""
    value, as_uuid = result.get_value, result.ftype(1) == _UUID_OID
    rows = []
    for row in range(result.ntuples):
        originator = value(row, 1)
        rows.append(
            Notification(
                id=_INT8.unpack(value(row, 0))[0],
                originator_id=UUID(bytes=bytes(originator)) if as_uuid else originator.decode(),
                originator_version=_INT8.unpack(value(row, 2))[0],
                topic=bytes(value(row, 3)).decode(),
                state=bytes(value(row, 4)),
            )
        )
    return rows
