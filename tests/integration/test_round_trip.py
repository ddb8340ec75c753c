"""The projector's batches go to PostgreSQL as one pipeline through libpq.

What the projector relies on: values reach their columns exactly as psycopg's typed
parameters put them there, a failed statement raises psycopg's own error and nothing after
it runs, each statement is prepared once per session, and a connection left unusable is
closed rather than handed back to the pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg import errors

from projections.round_trip import RoundTrip, _statement

INSERT = (
    "INSERT INTO receipts (id, code, kg, pallets, chilled, received_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


@pytest.fixture
def conn(database_url: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(
            "CREATE TABLE receipts (id uuid PRIMARY KEY, code text UNIQUE, kg numeric,"
            " pallets bigint, chilled boolean, received_at timestamptz)"
        )
        yield conn


def _prepared(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements ORDER BY 1")]


def test_a_receipts_values_are_stored_exactly_as_given(conn):
    lot_id = uuid4()
    at = datetime(2026, 11, 28, 6, 30, 15, 123_456, tzinfo=timezone(timedelta(hours=1)))
    trip = RoundTrip()
    trip.execute("BEGIN")
    trip.execute(INSERT, (lot_id, "RAW-Ä-001", Decimal("100.50"), 12, True, at))
    trip.execute(INSERT, (uuid4(), "RAW-002", None, None, False, None))
    trip.execute("COMMIT")
    read = trip.execute("SELECT kg, received_at FROM receipts WHERE id = %s", (lot_id,))
    answers = trip.run(conn)

    assert answers[read].get_value(0, 0) == b"100.50"  # text result: the scale is kept
    rows = conn.execute("SELECT * FROM receipts ORDER BY code").fetchall()
    assert rows == [
        (rows[0][0], "RAW-002", None, None, False, None),
        (lot_id, "RAW-Ä-001", Decimal("100.50"), 12, True, at),
    ]
    assert rows[1][5].astimezone(UTC).microsecond == 123_456


def test_the_first_failure_raises_psycopgs_own_error_and_nothing_after_it_runs(conn):
    trip = RoundTrip()
    trip.execute("BEGIN")
    trip.execute(INSERT, (uuid4(), "RAW-001", Decimal(1), 1, True, None))
    trip.execute(INSERT, (uuid4(), "RAW-001", Decimal(2), 2, True, None))  # the same code
    trip.execute(INSERT, (uuid4(), "RAW-003", Decimal(3), 3, True, None))
    trip.execute("COMMIT")

    with pytest.raises(errors.UniqueViolation):
        trip.run(conn)

    # The transaction is left failed, for its owner to roll back; the session lives on.
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (0,)


def test_each_statement_is_prepared_once_per_session(conn):
    for n in range(3):
        trip = RoundTrip()
        trip.execute(INSERT, (uuid4(), f"RAW-{n}", Decimal(n), n, True, None))
        trip.execute(INSERT, (uuid4(), f"RAW-{n}b", Decimal(n), n, True, None))
        trip.run(conn)

    assert _prepared(conn) == [_statement(INSERT)[0].decode()]
    assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (6,)


def test_a_session_that_forgot_its_statements_prepares_them_again(conn):
    def receive(code: str) -> None:
        trip = RoundTrip()
        trip.execute(INSERT, (uuid4(), code, Decimal(1), 1, True, None))
        trip.run(conn)

    receive("RAW-001")
    conn.execute("DEALLOCATE ALL")  # what a pooler's reset does

    with pytest.raises(errors.InvalidSqlStatementName):
        receive("RAW-002")
    receive("RAW-003")

    codes = [r[0] for r in conn.execute("SELECT code FROM receipts ORDER BY code")]
    assert codes == ["RAW-001", "RAW-003"]


def test_a_connection_cut_during_a_round_trip_is_closed_not_reused(conn, database_url):
    pid = conn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    trip = RoundTrip()
    trip.execute(INSERT, (uuid4(), "RAW-001", Decimal(1), 1, True, None))

    with pytest.raises(psycopg.OperationalError):
        trip.run(conn)
    assert conn.closed


@pytest.mark.parametrize("sql", [
    "SELECT %(named)s", "SELECT %b", "SELECT '100%%'", "SELECT %t",
])
def test_only_plain_placeholders_are_taken(sql):
    with pytest.raises(ValueError, match="only %s placeholders"):
        _statement(sql)


def test_placeholders_become_numbered_parameters():
    name, text = _statement("UPDATE t SET a = %s WHERE b = %s AND c < %s")
    assert text == b"UPDATE t SET a = $1 WHERE b = $2 AND c < $3"
    assert name == _statement("UPDATE t SET a = %s WHERE b = %s AND c < %s")[0]
    assert name != _statement("UPDATE t SET a = %s WHERE b = %s")[0]
