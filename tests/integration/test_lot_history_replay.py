"""An auditor replays a lot's recorded events and gets the lot the ledger itself loads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.errors import LotNotFound
from ledger.lot import Lot
from ledger.values import SYSTEM_ACTOR_ID


def _state(lot: Lot) -> dict:
    return {k: v for k, v in vars(lot).items() if not k.startswith("_pending")}


@pytest.fixture
def busy_raw_lot(ledger) -> Lot:
    """A raw lot held, released, and used by 60 batches: past a snapshot (every 50 events)."""
    raw = ledger.register_lot(
        NewLot("RAW-PORK-7", "RAW", weight_kg=Decimal("900.0")), actor_id=SYSTEM_ACTOR_ID
    ).aggregate
    ledger.record_qc_decision(
        NewQcDecision(raw.id, "HOLD", notes="probe reading 9.1 C at receiving"), actor_id=None
    )
    ledger.record_qc_decision(NewQcDecision(raw.id, "PASS"), actor_id=None)
    for i in range(60):
        ledger.register_lot(
            NewLot(f"DEB-{i}", "DEB", inputs=(InputRef(Decimal("7.25"), lot_code="RAW-PORK-7"),)),
            actor_id=None,
        )
    return ledger.get_lot(raw.id)


def test_replaying_every_event_rebuilds_the_lot_the_ledger_loads(ledger, busy_raw_lot):
    history = ledger.lot_history("RAW-PORK-7")

    replayed = history.replay()

    assert [e.version for e in history.entries] == list(range(1, 64))
    assert _state(replayed) == _state(busy_raw_lot)
    assert replayed.consumed_kg == Decimal("435.00")
    assert replayed.qc_status == "PASS"


def test_replaying_up_to_a_moment_rebuilds_the_lot_as_it_was_then(ledger, busy_raw_lot):
    full = ledger.lot_history("RAW-PORK-7")
    held_at = full.entries[1].recorded_at  # the HOLD

    then = ledger.lot_history("RAW-PORK-7", as_of=held_at)

    assert [e.type for e in then.entries] == ["Lot.Registered", "Lot.QcDecisionRecorded"]
    as_it_was = ledger.repository.get(busy_raw_lot.id, version=2)
    assert _state(then.replay()) == _state(as_it_was)
    assert then.replay().qc_status == "HOLD"
    assert then.replay().consumed_kg == 0


def test_each_event_is_chained_to_the_one_before_it(ledger, busy_raw_lot):
    entries = ledger.lot_history("RAW-PORK-7").entries

    assert entries[0].prev_hash is None
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert len({e.hash for e in entries}) == len(entries)


def test_an_unknown_lot_has_no_history(ledger):
    with pytest.raises(LotNotFound):
        ledger.lot_history("NO-SUCH-LOT")
