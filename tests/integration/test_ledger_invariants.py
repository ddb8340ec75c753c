"""Every rule the ledger enforces, against a real PostgreSQL event store.

The plant: RAW beef is received and weighed, mixed into MIX lots, and MIX lots become
finished goods (FG). QC may put any lot on HOLD or FAIL it, which stops it being used
until a later PASS. A refused command records nothing at all.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.errors import (
    DuplicateInput,
    EmailAlreadyRegistered,
    InsufficientQuantity,
    InvalidQuantity,
    LedgerError,
    LotCodeAlreadyExists,
    LotNotConsumable,
    LotNotFound,
    NotesRequired,
    SelfConsumption,
)
from ledger.lot import Lot, LotCode
from ledger.values import SYSTEM_ACTOR_ID
from tests.integration.event_log import event_log

REASON = "Metal detector alarm on line 2"


# --- helpers ---------------------------------------------------------------------------


def lot(ledger, code: str, lot_type: str = "RAW", weight: str | None = None, *inputs: InputRef):
    """Registers a lot; inputs are InputRefs (see `uses`)."""
    new = NewLot(
        lot_code=code,
        lot_type=lot_type,
        weight_kg=None if weight is None else Decimal(weight),
        inputs=tuple(inputs),
    )
    return ledger.register_lot(new, actor_id=SYSTEM_ACTOR_ID).aggregate


def uses(code: str, kg: str) -> InputRef:
    return InputRef(quantity_used_kg=Decimal(kg), lot_code=code)


def qc(ledger, lot_id: UUID, decision: str, notes: str | None = REASON):
    return ledger.record_qc_decision(
        NewQcDecision(lot_id=lot_id, decision=decision, notes=notes), actor_id=SYSTEM_ACTOR_ID
    )


@pytest.fixture
def raw_beef(ledger):
    """100 kg of RAW beef, received and weighed."""
    return lot(ledger, "RAW-BEEF-1", "RAW", "100")


def assert_refused_without_trace(container, before: list[tuple], code: str) -> None:
    assert event_log(container) == before, "a refused command must record nothing"
    assert not container.ledger.lot_code_taken(code)


# --- lot codes are unique --------------------------------------------------------------


def test_a_second_lot_with_the_same_code_is_refused(container, ledger, raw_beef):
    before = event_log(container)

    with pytest.raises(LotCodeAlreadyExists) as refused:
        lot(ledger, "RAW-BEEF-1", "RAW", "50")

    assert refused.value.lot_code == "RAW-BEEF-1"
    assert event_log(container) == before
    assert ledger.find_lot_by_code("RAW-BEEF-1").id == raw_beef.id
    assert ledger.find_lot_by_code("RAW-BEEF-1").weight_kg == Decimal("100")


def test_a_duplicate_code_refused_for_a_mix_leaves_its_raw_inputs_untouched(
    container, ledger, raw_beef
):
    lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))
    before = event_log(container)

    with pytest.raises(LotCodeAlreadyExists):
        lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))

    assert event_log(container) == before
    assert ledger.get_lot(raw_beef.id).consumed_kg == Decimal("10")


def test_each_code_is_claimed_once_in_the_log(container, ledger, raw_beef):
    lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))

    claims = [e for e in event_log(container) if e[3].endswith("LotCode.Claimed")]

    assert sorted(e[1] for e in claims) == sorted(
        [LotCode.id_for("RAW-BEEF-1"), LotCode.id_for("MIX-1")]
    )


# --- inputs must exist -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_ref",
    [
        lambda raw, user: InputRef(Decimal(10), lot_code="RAW-BEEF-404"),
        lambda raw, user: InputRef(Decimal(10), lot_id=uuid4()),
        lambda raw, user: InputRef(Decimal(10), lot_id=raw.id, lot_code="RAW-BEEF-2"),
        lambda raw, user: InputRef(Decimal(10), lot_id=user.id),
        lambda raw, user: InputRef(Decimal(10), lot_id=LotCode.id_for("RAW-BEEF-1")),
    ],
    ids=["unknown-code", "unknown-id", "id-and-code-disagree", "id-of-a-user",
         "id-of-a-code-claim"],
)
def test_a_mix_cannot_use_raw_beef_that_was_never_received(
    container, ledger, raw_beef, make_ref
):
    user = ledger.register_user(
        email="op@plant.example", full_name=None, role="OPERATOR", password_hash=None,
        actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    before = event_log(container)

    with pytest.raises(LotNotFound) as refused:
        lot(ledger, "MIX-1", "MIX", None, make_ref(raw_beef, user))

    assert str(refused.value).startswith("Input lot not found")
    assert_refused_without_trace(container, before, "MIX-1")
    assert ledger.get_lot(raw_beef.id).consumed_kg == 0


def test_a_mix_may_name_its_raw_beef_by_id_or_by_code(ledger, raw_beef):
    lot(ledger, "RAW-BEEF-2", "RAW", "50")

    mix = lot(
        ledger, "MIX-1", "MIX", None,
        InputRef(Decimal(10), lot_id=raw_beef.id),
        InputRef(Decimal(5), lot_id=ledger.find_lot_by_code("RAW-BEEF-2").id,
                 lot_code="RAW-BEEF-2"),
    )

    assert [i["lot_code"] for i in mix.inputs] == ["RAW-BEEF-1", "RAW-BEEF-2"]
    assert ledger.get_lot(raw_beef.id).consumed_kg == Decimal(10)
    assert ledger.find_lot_by_code("RAW-BEEF-2").consumed_kg == Decimal(5)


@pytest.mark.parametrize("decision", ["PASS", "HOLD"])
def test_qc_on_a_lot_that_does_not_exist_is_refused(container, ledger, decision):
    user = ledger.register_user(
        email="qa@plant.example", full_name=None, role="MANAGER", password_hash=None,
        actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    before = event_log(container)

    for not_a_lot in (uuid4(), user.id):
        with pytest.raises(LotNotFound):
            qc(ledger, not_a_lot, decision)

    assert event_log(container) == before


# --- QC: HOLD and FAIL block consumption, a later PASS releases -------------------------


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
def test_raw_beef_on_hold_or_failed_cannot_go_into_a_mix(container, ledger, raw_beef, decision):
    qc(ledger, raw_beef.id, decision)
    before = event_log(container)

    with pytest.raises(LotNotConsumable) as refused:
        lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))

    assert refused.value.decision == decision
    assert_refused_without_trace(container, before, "MIX-1")


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
def test_a_later_pass_releases_the_raw_beef_for_mixing(ledger, raw_beef, decision):
    qc(ledger, raw_beef.id, decision)
    qc(ledger, raw_beef.id, "PASS", notes=None)

    mix = lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))

    parent = ledger.get_lot(raw_beef.id)
    assert parent.qc_status == "PASS"
    assert parent.consumers == [mix.id]


def test_a_hold_after_a_pass_blocks_again(ledger, raw_beef):
    qc(ledger, raw_beef.id, "PASS", notes=None)
    lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))
    qc(ledger, raw_beef.id, "HOLD")

    with pytest.raises(LotNotConsumable):
        lot(ledger, "MIX-2", "MIX", None, uses("RAW-BEEF-1", "10"))

    assert ledger.get_lot(raw_beef.id).consumed_kg == Decimal(10)


def test_a_hold_on_a_mix_blocks_the_finished_goods_but_not_other_mixes(ledger, raw_beef):
    lot(ledger, "MIX-1", "MIX", "40", uses("RAW-BEEF-1", "40"))
    mix = ledger.find_lot_by_code("MIX-1")
    qc(ledger, mix.id, "HOLD")

    with pytest.raises(LotNotConsumable):
        lot(ledger, "FG-1", "FG", None, uses("MIX-1", "20"))
    lot(ledger, "MIX-2", "MIX", None, uses("RAW-BEEF-1", "40"))

    assert ledger.get_lot(raw_beef.id).consumed_kg == Decimal(80)


@pytest.mark.parametrize("notes", [None, "", "short"])
def test_a_hold_without_a_reason_is_refused_and_the_lot_stays_usable(
    container, ledger, raw_beef, notes
):
    before = event_log(container)

    with pytest.raises(NotesRequired):
        qc(ledger, raw_beef.id, "HOLD", notes=notes)

    assert event_log(container) == before
    lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"))


def test_a_qc_decision_keeps_the_time_it_was_recorded(ledger, raw_beef):
    committed = qc(ledger, raw_beef.id, "HOLD")

    (record,) = ledger.get_lot(raw_beef.id).qc_history

    assert record.decision_id == committed.extra["decision_id"]
    assert record.decided_at == committed.extra["event"].timestamp


# --- weight cap ------------------------------------------------------------------------


def test_mixes_may_use_up_the_raw_beef_exactly_but_never_more(container, ledger, raw_beef):
    lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "60"))
    before = event_log(container)

    with pytest.raises(InsufficientQuantity):
        lot(ledger, "MIX-2", "MIX", None, uses("RAW-BEEF-1", "40.001"))
    assert_refused_without_trace(container, before, "MIX-2")

    lot(ledger, "MIX-2", "MIX", None, uses("RAW-BEEF-1", "40"))
    assert ledger.get_lot(raw_beef.id).consumed_kg == Decimal(100)
    with pytest.raises(InsufficientQuantity):
        lot(ledger, "MIX-3", "MIX", None, uses("RAW-BEEF-1", "0.001"))


def test_raw_beef_of_unknown_weight_has_no_cap(ledger):
    lot(ledger, "RAW-UNWEIGHED", "RAW", None)

    for n in range(3):
        lot(ledger, f"MIX-{n}", "MIX", None, uses("RAW-UNWEIGHED", "9000"))

    assert ledger.find_lot_by_code("RAW-UNWEIGHED").consumed_kg == Decimal(27000)


# --- quantities, self-consumption, duplicate inputs ------------------------------------


@pytest.mark.parametrize("kg", ["0", "-10"])
def test_a_mix_must_use_a_positive_quantity(container, ledger, raw_beef, kg):
    before = event_log(container)

    with pytest.raises(InvalidQuantity):
        lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", kg))

    assert_refused_without_trace(container, before, "MIX-1")


def test_a_lot_cannot_consume_itself_by_code_or_by_id(container, ledger):
    before = event_log(container)
    own_id = uuid4()

    with pytest.raises(SelfConsumption):
        lot(ledger, "MIX-1", "MIX", None, uses("MIX-1", "1"))
    with pytest.raises(SelfConsumption):
        ledger.register_lot(
            NewLot(lot_code="MIX-1", lot_id=own_id,
                   inputs=(InputRef(Decimal(1), lot_id=own_id),)),
            actor_id=SYSTEM_ACTOR_ID,
        )

    assert_refused_without_trace(container, before, "MIX-1")


@pytest.mark.parametrize(
    "second_ref",
    [
        lambda raw: InputRef(Decimal(10), lot_code="RAW-BEEF-1"),
        lambda raw: InputRef(Decimal(10), lot_id=raw.id),
    ],
    ids=["listed-twice-by-code", "listed-by-code-then-by-id"],
)
def test_the_same_raw_lot_listed_twice_in_one_mix_is_refused(
    container, ledger, raw_beef, second_ref
):
    before = event_log(container)

    with pytest.raises(DuplicateInput):
        lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "10"), second_ref(raw_beef))

    assert_refused_without_trace(container, before, "MIX-1")


# --- a failed registration records nothing at all ----------------------------------------


@pytest.mark.parametrize(
    ("second_input", "error"),
    [
        (uses("RAW-ON-HOLD", "5"), LotNotConsumable),
        (uses("RAW-SMALL", "5.5"), InsufficientQuantity),
        (uses("RAW-NEVER-RECEIVED", "5"), LotNotFound),
        (uses("RAW-SMALL", "0"), InvalidQuantity),
    ],
    ids=["second-input-on-hold", "second-input-too-small", "second-input-missing",
         "second-input-zero-kg"],
)
def test_a_mix_refused_for_its_second_input_leaves_the_first_untouched(
    container, ledger, raw_beef, second_input, error
):
    held = lot(ledger, "RAW-ON-HOLD", "RAW", "50")
    qc(ledger, held.id, "HOLD")
    lot(ledger, "RAW-SMALL", "RAW", "5")
    before = event_log(container)

    with pytest.raises(error):
        lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "30"), second_input)

    assert_refused_without_trace(container, before, "MIX-1")
    first = ledger.get_lot(raw_beef.id)
    assert (first.version, first.consumed_kg, first.consumers) == (1, 0, [])
    # Nothing was reserved: the code and the beef are still free for a corrected mix.
    lot(ledger, "MIX-1", "MIX", None, uses("RAW-BEEF-1", "100"))


def test_every_refusal_is_a_ledger_error():
    for error in (LotCodeAlreadyExists, LotNotFound, LotNotConsumable, InsufficientQuantity,
                  InvalidQuantity, SelfConsumption, DuplicateInput, NotesRequired,
                  EmailAlreadyRegistered):
        assert issubclass(error, LedgerError)


# --- the whole chain RAW -> MIX -> FG ---------------------------------------------------


def test_raw_beef_to_mix_to_finished_goods_is_recorded_in_one_save_each(
    container, ledger, raw_beef
):
    lot(ledger, "RAW-BEEF-2", "RAW", "80")
    mix = lot(ledger, "MIX-1", "MIX", "70",
              uses("RAW-BEEF-1", "40"), uses("RAW-BEEF-2", "30"))
    fg = lot(ledger, "FG-1", "FG", "70", uses("MIX-1", "70"))

    assert ledger.get_lot(raw_beef.id).consumers == [mix.id]
    assert ledger.find_lot_by_code("RAW-BEEF-2").remaining_kg == Decimal(50)
    assert ledger.get_lot(mix.id).consumers == [fg.id]
    assert ledger.get_lot(mix.id).remaining_kg == 0
    mix_events = [e for e in event_log(container) if e[3].endswith(("Registered", "Claimed",
                                                                   "Consumed"))]
    assert [e[3].split(":")[1] for e in mix_events] == [
        "Lot.Registered", "LotCode.Claimed",                      # RAW-BEEF-1
        "Lot.Registered", "LotCode.Claimed",                      # RAW-BEEF-2
        "Lot.Registered", "LotCode.Claimed", "Lot.Consumed", "Lot.Consumed",  # MIX-1
        "Lot.Registered", "LotCode.Claimed", "Lot.Consumed",      # FG-1
    ]
    assert isinstance(ledger.get_lot(fg.id), Lot)


# --- users -----------------------------------------------------------------------------


def test_an_email_is_registered_once_whatever_its_spelling(container, ledger):
    ledger.register_user(email="qa@plant.example", full_name="QA", role="MANAGER",
                         password_hash=None, actor_id=SYSTEM_ACTOR_ID)
    before = event_log(container)

    with pytest.raises(EmailAlreadyRegistered):
        ledger.register_user(email=" QA@Plant.Example ", full_name="Other", role="VIEWER",
                             password_hash=None, actor_id=SYSTEM_ACTOR_ID)

    assert event_log(container) == before
    assert ledger.find_user_by_email("qa@plant.example").full_name == "QA"


def test_a_login_answers_the_time_of_the_previous_login(ledger):
    user = ledger.register_user(email="op@plant.example", full_name=None, role="OPERATOR",
                                password_hash=None, actor_id=SYSTEM_ACTOR_ID).aggregate
    ledger.change_role(user.id, "MANAGER", actor_id=SYSTEM_ACTOR_ID)

    first = ledger.record_login(user.id)
    second = ledger.record_login(user.id)

    assert first.extra["previous_login"] is None
    first_login_at = first.aggregate.last_login
    assert first_login_at == first.aggregate.modified_on  # the login's own event time
    assert second.extra["previous_login"] == first_login_at
    assert ledger.get_user(user.id).last_login == second.aggregate.modified_on
