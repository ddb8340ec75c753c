"""The Lot aggregate on its own: what a lot of beef may and may not be used for.

No database here: lots are built directly and their methods called, as the ledger does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import pytest

from ledger.application import RawLotCommitted
from ledger.errors import (
    InsufficientQuantity,
    InvalidQuantity,
    LedgerError,
    LotNotConsumable,
    NotesRequired,
)
from ledger.lot import Lot, LotCode
from ledger.values import MIN_NOTES_FOR_BLOCKING_DECISION

REASON = "Core temperature 9 C at receiving"  # long enough for HOLD and FAIL


def new_lot(code: str = "RAW-BEEF-1", *, weight_kg: str | None = "100", **extra) -> Lot:
    fields = {
        "id": uuid4(),
        "lot_code": code,
        "lot_type": "RAW",
        "production_run_id": None,
        "phase_id": None,
        "operator_id": None,
        "weight_kg": None if weight_kg is None else Decimal(weight_kg),
        "temperature_c": Decimal("3.5"),
        "metadata_json": "{}",
        "inputs": [],
        "actor_id": None,
    } | extra
    return Lot(**fields)


def decide(lot: Lot, decision: str, notes: str | None = REASON) -> None:
    lot.record_qc_decision(
        decision_id=uuid4(),
        decision=decision,
        qc_gate_id=None,
        operator_id=None,
        notes=notes,
        temperature_c=None,
        digital_signature=None,
        actor_id=None,
    )


def consume(lot: Lot, kg: str, child: UUID | None = None) -> None:
    lot.consume(child_lot_id=child or uuid4(), quantity_kg=Decimal(kg), actor_id=None)


# --- registration ---------------------------------------------------------------------


def test_a_freshly_received_raw_beef_lot_is_unused_and_has_no_qc_decision():
    lot = new_lot(weight_kg="100")

    assert lot.version == 1
    assert lot.consumed_kg == 0
    assert lot.remaining_kg == Decimal("100")
    assert lot.qc_status is None
    assert lot.consumers == []
    assert [type(e) for e in lot.collect_events()] == [Lot.Registered]


def test_a_mix_lot_records_which_raw_lots_went_into_it():
    raw_id = uuid4()
    inputs = [{"lot_id": raw_id, "lot_code": "RAW-BEEF-1", "quantity_used_kg": Decimal("40")}]

    mix = new_lot("MIX-1", lot_type="MIX", inputs=inputs)

    assert mix.inputs == inputs
    (registered,) = mix.collect_events()
    assert registered.inputs == inputs
    assert registered.lot_code == "MIX-1"


# --- consumption ----------------------------------------------------------------------


def test_mixing_uses_part_of_a_raw_lot_and_remembers_the_mix():
    raw, mix_id = new_lot(weight_kg="100"), uuid4()

    consume(raw, "40", child=mix_id)

    assert raw.consumed_kg == Decimal("40")
    assert raw.remaining_kg == Decimal("60")
    assert raw.consumers == [mix_id]
    assert type(raw.collect_events()[-1]) is Lot.Consumed


def test_a_raw_lot_can_be_used_up_exactly_over_several_mixes():
    raw = new_lot(weight_kg="100")

    for kg in ("30", "30", "40"):
        consume(raw, kg)

    assert raw.consumed_kg == Decimal("100")
    assert raw.remaining_kg == 0


@pytest.mark.parametrize(
    ("already_used", "requested"),
    [("0", "100.001"), ("60", "40.5"), ("100", "0.001")],
    ids=["more-than-the-whole-lot", "more-than-what-is-left", "lot-already-used-up"],
)
def test_a_mix_cannot_use_more_raw_beef_than_the_lot_weighed(already_used, requested):
    raw = new_lot(weight_kg="100")
    if Decimal(already_used):
        consume(raw, already_used)
    version = raw.version

    with pytest.raises(InsufficientQuantity) as refused:
        consume(raw, requested)

    assert refused.value.lot_code == "RAW-BEEF-1"
    assert raw.consumed_kg == Decimal(already_used)
    assert raw.version == version


def test_a_lot_of_unknown_weight_has_no_cap_on_consumption():
    raw = new_lot(weight_kg=None)

    consume(raw, "5000")
    consume(raw, "5000")

    assert raw.consumed_kg == Decimal("10000")
    assert raw.remaining_kg is None


@pytest.mark.parametrize("kg", ["0", "-1", "-0.001"])
def test_a_mix_must_use_a_positive_quantity_of_raw_beef(kg):
    raw = new_lot(weight_kg="100")

    with pytest.raises(InvalidQuantity):
        consume(raw, kg)

    assert raw.consumed_kg == 0
    assert raw.version == 1


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
def test_raw_beef_on_hold_or_failed_cannot_go_into_a_mix(decision):
    raw = new_lot()
    decide(raw, decision)

    with pytest.raises(LotNotConsumable) as refused:
        consume(raw, "10")

    assert refused.value.decision == decision
    assert refused.value.lot_code == "RAW-BEEF-1"
    assert raw.consumed_kg == 0


@pytest.mark.parametrize("blocking", ["HOLD", "FAIL"])
def test_a_later_pass_releases_the_raw_lot_for_mixing(blocking):
    raw = new_lot()
    decide(raw, blocking)
    decide(raw, "PASS", notes=None)

    consume(raw, "10")

    assert raw.qc_status == "PASS"
    assert raw.consumed_kg == Decimal("10")


def test_only_the_latest_qc_decision_counts():
    raw = new_lot()
    decide(raw, "PASS", notes=None)
    decide(raw, "HOLD")

    with pytest.raises(LotNotConsumable):
        consume(raw, "10")
    assert [r.decision for r in raw.qc_history] == ["PASS", "HOLD"]


def test_quantity_is_checked_before_qc_status_and_nothing_is_recorded():
    raw = new_lot()
    decide(raw, "HOLD")
    version = raw.version

    with pytest.raises(InvalidQuantity):
        consume(raw, "0")

    assert raw.version == version


# --- quality control --------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
@pytest.mark.parametrize(
    "notes", [None, "", "   ", "x" * (MIN_NOTES_FOR_BLOCKING_DECISION - 1), "  too short  "]
)
def test_holding_or_failing_a_lot_requires_a_reason(decision, notes):
    raw = new_lot()

    with pytest.raises(NotesRequired):
        decide(raw, decision, notes=notes)

    assert raw.qc_status is None
    assert raw.version == 1


def test_a_reason_of_exactly_the_minimum_length_is_enough():
    raw = new_lot()

    decide(raw, "HOLD", notes="x" * MIN_NOTES_FOR_BLOCKING_DECISION)

    assert raw.qc_status == "HOLD"


def test_a_pass_needs_no_notes_and_is_remembered_with_its_time():
    raw = new_lot()
    decision_id = uuid4()

    raw.record_qc_decision(
        decision_id=decision_id, decision="PASS", qc_gate_id=None, operator_id=None,
        notes=None, temperature_c=Decimal("2.1"), digital_signature="sig", actor_id=None,
    )

    (record,) = raw.qc_history
    assert record.decision_id == decision_id
    assert record.decision == "PASS"
    assert record.decided_at == raw.modified_on
    recorded = raw.collect_events()[-1]
    assert isinstance(recorded, Lot.QcDecisionRecorded)
    assert recorded.temperature_c == Decimal("2.1")


def test_refusals_are_named_ledger_errors():
    for error in (InsufficientQuantity, InvalidQuantity, LotNotConsumable, NotesRequired):
        assert issubclass(error, LedgerError)


# --- lot code claims ------------------------------------------------------------------


def test_a_lot_code_claim_is_keyed_by_the_code_so_two_claims_collide():
    first = LotCode(lot_code="FG-2024-001", lot_id=uuid4(), actor_id=None)
    second = LotCode(lot_code="FG-2024-001", lot_id=uuid4(), actor_id=None)

    assert first.id == second.id == LotCode.id_for("FG-2024-001")
    assert LotCode.id_for("FG-2024-002") != first.id


@pytest.mark.parametrize("code", ["FG-2024-001", "", "SUCUK-Ç-€-😀", "a/b c\t"])
def test_a_claim_keeps_the_key_every_earlier_claim_was_stored_under(code):
    """Claims already in the log were keyed by the standard uuid5 of the code: a new claim
    of the same code must land on the same key, or the code could be registered twice."""
    assert LotCode.id_for(code) == uuid5(NAMESPACE_URL, f"flowviz:lot-code:{code}")
    assert LotCode.id_for(code).version == 5


# --- building without the library's argument matching ----------------------------------


def test_registering_directly_records_the_same_event_as_calling_the_class():
    fields = {
        "id": uuid4(), "lot_code": "RAW-BEEF-1", "lot_type": "RAW", "production_run_id": None,
        "phase_id": uuid4(), "operator_id": None, "weight_kg": Decimal("100.5"),
        "temperature_c": Decimal("3.5"), "metadata_json": '{"k": 1}', "inputs": [],
        "actor_id": uuid4(),
    }
    called, direct = Lot(**fields), Lot.register(**fields)

    def recorded(lot: Lot) -> dict:
        [created] = lot.collect_events()
        return {k: v for k, v in vars(created).items() if k != "timestamp"} | {
            "class": type(created)
        }

    assert recorded(direct) == recorded(called)
    assert (direct.id, direct.version, direct.lot_code, direct.remaining_kg) == (
        called.id, 1, "RAW-BEEF-1", Decimal("100.5")
    )


def test_registering_directly_still_refuses_a_missing_or_unknown_field():
    with pytest.raises(TypeError):
        Lot.register(id=uuid4(), lot_code="RAW-BEEF-1")
    with pytest.raises(TypeError):
        new_lot_fields = {"id": uuid4(), "lot_code": "X", "lot_type": None,
                          "production_run_id": None, "phase_id": None, "operator_id": None,
                          "weight_kg": None, "temperature_c": None, "metadata_json": "{}",
                          "inputs": [], "actor_id": None, "colour": "red"}
        Lot.register(**new_lot_fields)


def test_claiming_directly_records_the_same_claim_under_the_same_key():
    lot_id, actor = uuid4(), uuid4()
    called = LotCode(lot_code="SUCUK-Ç-1", lot_id=lot_id, actor_id=actor)
    direct = LotCode.claim(lot_code="SUCUK-Ç-1", lot_id=lot_id, actor_id=actor)

    [a], [b] = called.collect_events(), direct.collect_events()
    assert type(a) is type(b)
    assert {k: v for k, v in vars(a).items() if k != "timestamp"} == {
        k: v for k, v in vars(b).items() if k != "timestamp"
    }
    assert direct.id == LotCode.id_for("SUCUK-Ç-1")


def test_a_raw_lots_registration_events_are_those_its_aggregates_record():
    """A raw lot is recorded from its events alone: they are the events that building
    the lot and its code claim records, and the lot is what replaying them builds."""
    lot_id, at, actor = uuid4(), datetime(2026, 11, 28, 6, 0, 1, 234_567, tzinfo=UTC), uuid4()
    fields = {
        "lot_code": "RAW-BEEF-7", "lot_type": "RAW", "production_run_id": uuid4(),
        "phase_id": None, "operator_id": actor, "weight_kg": Decimal("812.50"),
        "temperature_c": Decimal("2.5"), "metadata_json": '{"supplier":"Hof Meier"}',
        "inputs": [], "actor_id": actor,
    }
    built = Lot.register(id=lot_id, timestamp=at, **fields)
    claim = LotCode.claim(lot_code="RAW-BEEF-7", lot_id=lot_id, actor_id=actor)

    registered = Lot.registered(id=lot_id, timestamp=at, **fields)
    claimed = LotCode.claimed(
        lot_code="RAW-BEEF-7", lot_id=lot_id, actor_id=actor, timestamp=claim.created_on
    )

    assert [registered] == built.collect_events()
    assert [claimed] == claim.collect_events()
    replayed = RawLotCommitted(registered, position=2).aggregate
    assert type(replayed) is Lot
    assert vars(replayed) == vars(built)


def test_a_raw_lots_events_are_built_as_their_constructors_build_them():
    """`Lot.registered` and `LotCode.claimed` set an event's fields in one step: the same
    fields in the same order (the stored JSON follows that order), and the same refusals."""
    lot_id, at = uuid4(), datetime(2026, 11, 28, 6, 0, 1, tzinfo=UTC)
    fields = {
        "lot_code": "RAW-LAMB-3", "lot_type": "RAW", "production_run_id": None,
        "phase_id": None, "operator_id": None, "weight_kg": Decimal("40"),
        "temperature_c": None, "metadata_json": "{}", "inputs": [], "actor_id": None,
    }
    constructed = Lot.Registered(
        originator_id=lot_id, originator_version=1, timestamp=at,
        originator_topic="ledger.lot:Lot", **fields,
    )
    claim = LotCode.Claimed(
        originator_id=LotCode.id_for("RAW-LAMB-3"), originator_version=1, timestamp=at,
        originator_topic="ledger.lot:LotCode", lot_code="RAW-LAMB-3", lot_id=lot_id,
        actor_id=None,
    )

    registered = Lot.registered(id=lot_id, timestamp=at, **fields)
    claimed = LotCode.claimed(lot_code="RAW-LAMB-3", lot_id=lot_id, actor_id=None, timestamp=at)

    for built, expected in ((registered, constructed), (claimed, claim)):
        assert type(built) is type(expected)
        assert list(vars(built).items()) == list(vars(expected).items())
        with pytest.raises(AttributeError):  # still frozen
            built.lot_code = "RAW-LAMB-4"

    with pytest.raises(TypeError):
        Lot.registered(id=lot_id, timestamp=at, **{**fields, "grade": "A"})
    with pytest.raises(TypeError):
        Lot.registered(id=lot_id, timestamp=at, **{k: v for k, v in fields.items()
                                                   if k != "inputs"})
    with pytest.raises(TypeError):
        Lot.registered(id=str(lot_id), timestamp=at, **fields)
