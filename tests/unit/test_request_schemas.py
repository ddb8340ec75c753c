"""What the API accepts in a lot or QC request, before anything reaches the ledger."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from api.schemas import LotIn, QcDecisionIn


@pytest.mark.parametrize(
    ("given", "kept"),
    [(Decimal("4.50"), "4.50"), (4, "4"), ("12.5", "12.5"), (Decimal("1E+2"), "100"), ("-0", "0")],
)
def test_weights_keep_the_decimal_as_written(given, kept):
    assert format(LotIn(lot_code="L", weight_kg=given).weight_kg, "f") == kept


@pytest.mark.parametrize(
    "body",
    [
        {"lot_code": ""},
        {"lot_code": "x" * 101},
        {"lot_code": "   "},
        {"lot_code": "tab\there"},
        {"lot_code": "L", "weight_kg": -1},
        {"lot_code": "L", "weight_kg": 10000.01},
        {"lot_code": "L", "weight_kg": True},
        {"lot_code": "L", "weight_kg": "NaN"},
        {"lot_code": "L", "temperature_c": -50.5},
        {"lot_code": "L", "lot_type": "RAWISH"},
        {"lot_code": "L", "unknown": 1},
        {"lot_code": "L", "inputs": [{"quantity_used_kg": 1}]},
        {"lot_code": "L", "inputs": [{"lot_code": "P", "quantity_used_kg": 0}]},
        {"lot_code": 12},
    ],
)
def test_lot_requests_outside_the_contract_are_refused(body):
    with pytest.raises(ValidationError):
        LotIn.model_validate(body)


def test_lot_codes_may_hold_what_factories_print_on_labels():
    for code in ("RAW/BEEF 01", "Rind-Hüfte-Ø12", "50%", "A?B#C", "x" * 100):
        assert LotIn(lot_code=code).lot_code == code


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
def test_holding_or_failing_a_lot_needs_a_reason_of_ten_characters(decision):
    lot_id = "11111111-1111-1111-1111-111111111101"
    with pytest.raises(ValidationError, match="10 characters"):
        QcDecisionIn(lot_id=lot_id, decision=decision, notes="too warm")
    assert QcDecisionIn(lot_id=lot_id, decision=decision, notes="core temp 9C").notes


def test_a_pass_needs_no_notes_but_a_decision_needs_a_lot():
    assert QcDecisionIn(lot_id="11111111-1111-1111-1111-111111111101", decision="PASS")
    with pytest.raises(ValidationError):
        QcDecisionIn.model_validate({"decision": "PASS", "notes": "ok"})
