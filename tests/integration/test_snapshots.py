"""Long-lived aggregates load from snapshots, and load exactly as a full replay would."""

from __future__ import annotations

from decimal import Decimal

from ledger.commands import NewLot, NewQcDecision
from ledger.values import SYSTEM_ACTOR_ID


def test_a_raw_lot_feeding_many_batches_loads_from_a_snapshot_as_a_replay_would(ledger):
    raw = ledger.register_lot(
        NewLot(lot_code="RAW-BEEF", lot_type="RAW", weight_kg=Decimal(1000)), actor_id=None
    ).aggregate
    for n in range(60):
        ledger.register_lot(
            NewLot(lot_code=f"MIX-{n}", inputs=(_input("RAW-BEEF", "1.5"),)), actor_id=None
        )
        if n == 30:
            ledger.record_qc_decision(
                NewQcDecision(lot_id=raw.id, decision="PASS", notes="lab ok"), actor_id=None
            )

    snapshot = ledger.snapshots.get(raw.id, desc=True, limit=1)
    assert [s.originator_version for s in snapshot] == [50]
    loaded = ledger.get_lot(raw.id)
    replayed = replay(ledger, raw.id)
    assert loaded.__dict__ == replayed.__dict__
    assert loaded.consumed_kg == Decimal("90.0") and loaded.qc_status == "PASS"


def test_a_user_logging_in_every_shift_loads_from_a_snapshot(ledger):
    user = ledger.register_user(email="night@plant.example", full_name=None, role="OPERATOR",
                                password_hash=None, actor_id=SYSTEM_ACTOR_ID).aggregate
    for _ in range(45):
        ledger.record_login(user.id)

    assert [s.originator_version for s in ledger.snapshots.get(user.id, desc=True, limit=1)] == [40]
    loaded = ledger.find_user_by_email("night@plant.example")
    replayed = replay(ledger, user.id)
    assert loaded.__dict__ == replayed.__dict__ and loaded.version == 46


def replay(ledger, aggregate_id):
    """The aggregate rebuilt from every one of its events, ignoring snapshots."""
    aggregate = None
    for event in ledger.events.get(aggregate_id):
        aggregate = event.mutate(aggregate)
    return aggregate


def _input(code: str, kg: str):
    from ledger.commands import InputRef  # noqa: PLC0415

    return InputRef(quantity_used_kg=Decimal(kg), lot_code=code)
