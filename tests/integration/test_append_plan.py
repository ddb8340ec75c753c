"""The append function's plan is made once per connection, usually while the log is small.

A plant starts with an empty ledger and the writer keeps its connections for an hour: a
plan that scans the log (the cheapest way to read a nearly empty table) would make every
later append slower as the log grows. PostgreSQL counts sequential scans per table, so
the test reads that count around an append made long after the plan was.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from ledger.application import _new_lot
from ledger.commands import NewLot
from tests.integration.lots import register


def raw_lot_events(ledger, code: str) -> list:
    lot, claim = _new_lot(NewLot(code, "RAW", weight_kg=Decimal(10)), uuid4(), [], None)
    return as_appended(ledger, [*lot.collect_events(), *claim.collect_events()])


def pass_decision_events(ledger, code: str) -> list:
    """A PASS for a lot already stored: an event whose predecessor the append looks up."""
    lot = ledger.find_lot_by_code(code)
    lot.record_qc_decision(
        decision_id=uuid4(), decision="PASS", qc_gate_id=None, operator_id=None,
        notes=None, temperature_c=None, digital_signature=None, actor_id=None,
    )
    return as_appended(ledger, lot.collect_events())


def as_appended(ledger, events: list) -> list:
    recorder = ledger.recorder
    stored = [ledger.mapper.to_stored_event(e) for e in events]
    return [
        recorder.construct_pg_stored_event(
            s.originator_id, s.originator_version, s.topic, s.state
        )
        for s in stored
    ]


def seq_scans_of_the_log(conn, schema: str, table: str) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")  # this session's counts, now
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
        (schema, table),
    ).fetchone()
    return int(row["seq_scan"])


def test_an_append_long_after_the_first_does_not_scan_the_grown_log(container, ledger):
    recorder, schema = ledger.recorder, container.settings.database_schema
    table = recorder.events_table_name
    with recorder.datastore.get_connection() as conn:
        # The first appends on this connection plan every statement, on a near-empty log;
        # by the sixth, PostgreSQL may settle on one plan for the rest of the session.
        for n in range(8):
            conn.execute(recorder._append_all, (raw_lot_events(ledger, f"RAW-{n}"),))
            conn.execute(recorder._append_all, (pass_decision_events(ledger, f"RAW-{n}"),))
        for n in range(60):  # a morning's receiving, through the writer's other connections
            register(ledger, f"RAW-DOCK-{n}", "RAW", "100")
        before = seq_scans_of_the_log(conn, schema, table)
        conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"')  # a scan is counted
        assert seq_scans_of_the_log(conn, schema, table) == before + 1
        before += 1

        conn.execute(recorder._append_all, (raw_lot_events(ledger, "RAW-LATER"),))
        conn.execute(recorder._append_all, (pass_decision_events(ledger, "RAW-DOCK-7"),))

        assert seq_scans_of_the_log(conn, schema, table) == before
    assert ledger.find_lot_by_code("RAW-LATER") is not None
    assert ledger.verify().intact
