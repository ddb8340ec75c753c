"""The event log is append-only: what the plant recorded can never be rewritten.

The events table refuses UPDATE, DELETE and TRUNCATE through triggers, whoever asks,
and the ledger itself only ever appends.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import ProgrammingError, StoredEvent, Tracking

from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.errors import InsufficientQuantity
from ledger.values import SYSTEM_ACTOR_ID
from projections.schema import truncate_read_tables
from tests.integration.event_log import event_log


@pytest.fixture
def recorded_mix(container, ledger) -> list[tuple]:
    """RAW beef received and mixed into MIX-1; returns the log as recorded."""
    ledger.register_lot(NewLot("RAW-BEEF-1", "RAW", weight_kg=Decimal(100)), actor_id=None)
    ledger.register_lot(
        NewLot("MIX-1", "MIX", inputs=(InputRef(Decimal(40), lot_code="RAW-BEEF-1"),)),
        actor_id=None,
    )
    return event_log(container)


REWRITES = {
    "backdate-a-consumption": "UPDATE {t} SET topic = 'ledger.lot:Lot.Registered'"
    " WHERE topic = 'ledger.lot:Lot.Consumed'",
    "rewrite-every-event": "UPDATE {t} SET state = state",
    "delete-the-mix": "DELETE FROM {t} WHERE notification_id = (SELECT max(notification_id)"
    " FROM {t})",
    "delete-everything": "DELETE FROM {t}",
    "truncate": "TRUNCATE {t}",
    "truncate-cascade": "TRUNCATE {t} CASCADE",
}


@pytest.mark.parametrize("statement", REWRITES.values(), ids=REWRITES.keys())
def test_nobody_can_rewrite_or_erase_the_recorded_mix(container, recorded_mix, statement):
    sql = statement.format(t=f'"{container.settings.database_schema}".{container.events_table}')

    # A connection of its own, as the database owner: the triggers refuse it all the same.
    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="events are immutable"):
            conn.execute(sql)

    assert event_log(container) == recorded_mix


def test_the_guard_stays_in_place_when_another_process_starts(
    make_container, container, recorded_mix
):
    make_container()  # a second server process on the same schema re-creates the triggers

    with container.read_pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute(f"DELETE FROM {container.events_table}")
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relname = %s AND NOT t.tgisinternal"
            " ORDER BY tgname",
            (container.events_table,),
        ).fetchall()
    assert [t[0] for t in triggers] == [
        f"{container.events_table}_no_rows",
        f"{container.events_table}_no_truncate",
    ]
    assert event_log(container) == recorded_mix


def test_a_day_at_the_plant_only_ever_appends_to_the_log(container, ledger, recorded_mix):
    raw = ledger.find_lot_by_code("RAW-BEEF-1")
    user = ledger.register_user(email="qa@plant.example", full_name="QA", role="MANAGER",
                                password_hash=None, actor_id=SYSTEM_ACTOR_ID).aggregate
    ledger.record_login(user.id)
    ledger.record_qc_decision(
        NewQcDecision(lot_id=raw.id, decision="HOLD", notes="Temperature excursion"),
        actor_id=user.id,
    )
    ledger.record_qc_decision(NewQcDecision(lot_id=raw.id, decision="PASS"), actor_id=user.id)
    ledger.register_lot(
        NewLot("FG-1", "FG", inputs=(InputRef(Decimal(40), lot_code="MIX-1"),)), actor_id=None
    )
    with pytest.raises(InsufficientQuantity):
        ledger.register_lot(
            NewLot("MIX-2", "MIX", inputs=(InputRef(Decimal(61), lot_code="RAW-BEEF-1"),)),
            actor_id=None,
        )
    ledger.deactivate_user(user.id, actor_id=SYSTEM_ACTOR_ID)

    after = event_log(container)

    assert after[: len(recorded_mix)] == recorded_mix
    assert len(after) > len(recorded_mix)
    ids = [e[0] for e in after]
    assert ids == sorted(set(ids))


def test_rebuilding_the_read_tables_leaves_the_log_alone(container, recorded_mix):
    container.projector.catch_up()

    with container.read_pool.connection() as conn:
        truncate_read_tables(conn, container.projector.name)

    assert event_log(container) == recorded_mix


def test_only_hashed_appends_reach_the_log(container, ledger, recorded_mix):
    """The library's process-recorder path (with tracking) would append rows without
    hashes; the ledger's recorder refuses it and records nothing."""
    event = StoredEvent(uuid4(), 1, "ledger.lot:Lot.Registered", b"{}")
    with pytest.raises(ProgrammingError, match="no tracking"):
        ledger.recorder.insert_events([event], tracking=Tracking("elsewhere", 1))

    assert event_log(container) == recorded_mix


SNAPSHOT_REWRITES = {
    "give-the-beef-back": "UPDATE {t} SET state = state",
    "drop-the-snapshot": "DELETE FROM {t}",
    "truncate": "TRUNCATE {t}",
}


@pytest.mark.parametrize("statement", SNAPSHOT_REWRITES.values(), ids=SNAPSHOT_REWRITES.keys())
def test_nobody_can_edit_or_drop_a_snapshot_the_ledger_loads_from(container, ledger, statement):
    """A busy lot is loaded from its snapshot, so its invariants are checked against it: the
    snapshots table refuses rewrites as the events table does, while the ledger still
    takes new snapshots."""
    raw = ledger.register_lot(NewLot("RAW-BEEF-SNAP", "RAW", weight_kg=Decimal(100)), actor_id=None)
    for n in range(55):
        ledger.register_lot(
            NewLot(f"MIX-SNAP-{n}", "MIX",
                   inputs=(InputRef(Decimal(1), lot_code="RAW-BEEF-SNAP"),)),
            actor_id=None,
        )
    snapshots = ledger.snapshots.recorder.events_table_name
    sql = statement.format(t=f'"{container.settings.database_schema}".{snapshots}')

    with psycopg.connect(container.settings.database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="snapshots are immutable"):
            conn.execute(sql)

    [kept] = ledger.snapshots.get(raw.aggregate.id, desc=True, limit=1)
    assert kept.originator_version == 50
    ledger.repository.cache = None  # a new process: loaded from the snapshot
    assert ledger.get_lot(raw.aggregate.id).consumed_kg == Decimal(55)
    assert ledger.verify().intact
