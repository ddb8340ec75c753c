"""The append function called straight through libpq, on the writers' own connections.

The call is one statement with one argument and one column of results, sent a batch at a
time. psycopg's cursor around it (converting the query, its own bookkeeping of prepared
statements, a cursor and a row maker per call) was about a third of the writer thread's
time holding the interpreter lock (py-spy). Here each connection prepares the call once,
when its writer opens it; a batch is then one `send_query_prepared` of the event array's
bytes, waited for by psycopg's own generator, and its positions are read from the binary
result. A failure is the exception psycopg itself raises for that result, so a clash is
still a `UniqueViolation`. From 16 threads, 9,144-9,304 -> 9,305-10,130 registrations/s
and 89-91 -> 81-89 us of CPU each; from one event loop 67-70 -> 62-69 us, its rate the
same within the noise (3 alternated pairs each). `generators.execute` and `wait` are
psycopg's building blocks rather than its documented interface: every append of the
tests goes through them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import generators
from psycopg.adapt import Dumper
from psycopg.errors import error_from_result
from psycopg.pq import ExecStatus, Format, PGresult

from ledger.event_array import EventArray

_NAME = b"flowviz_append"
_POSITION = struct.Struct("!q")  # the function's bigint, in binary


class PreparedAppend:
    def __init__(self, append_sql: str, dumper: type[Dumper]) -> None:
        # The writers' SQL takes its argument as psycopg's %b; PREPARE takes libpq's $1,
        # and infers its type from the function's signature.
        self._prepare = f"PREPARE {_NAME.decode()} AS {append_sql.replace('%b', '$1')}"
        self._dump = dumper(EventArray).dump

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(self._prepare)

    async def prepare_async(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(self._prepare)

    def send(
        self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], appends: Sequence[Any]
    ) -> None:
        """Sends the call for the batch (on a prepared connection); `receive` answers it."""
        conn.pgconn.send_query_prepared(
            _NAME,
            [self._dump(EventArray(appends))],
            param_formats=[Format.BINARY],
            result_format=Format.BINARY,
        )

    def receive(self, conn: psycopg.Connection[Any]) -> list[int]:
        """The positions of the sent batch's events, in order."""
        return _positions(conn.wait(generators.execute(conn.pgconn)), conn.info.encoding)

    async def call_async(
        self, conn: psycopg.AsyncConnection[Any], appends: Sequence[Any]
    ) -> list[int]:
        self.send(conn, appends)
        return _positions(await conn.wait(generators.execute(conn.pgconn)), conn.info.encoding)


def _positions(results: list[PGresult], encoding: str) -> list[int]:
    result = results[-1]
    if result.status != ExecStatus.TUPLES_OK:
        raise error_from_result(result, encoding=encoding)
    return [_POSITION.unpack(result.get_value(row, 0))[0] for row in range(result.ntuples)]
