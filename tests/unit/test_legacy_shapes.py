"""The response shapes legacy clients diff as text, checked without a database."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import orjson
import pytest

from api import legacy_shapes

LOT_ROW = {
    "created_at": datetime(2026, 11, 26, 11, 48, 50, 199_999, tzinfo=UTC),
    "metadata": {},
    "temperature_c": Decimal("4"),
    "weight_kg": Decimal("100.5"),
    "operator_id": None,
    "phase_id": None,
    "production_run_id": None,
    "lot_type": "RAW",
    "lot_code": "T-1",
    "id": UUID("4d0f44e9-e0f5-41b2-9cfa-add9d297eb6a"),
}


def test_a_lot_row_reads_exactly_like_the_legacy_example_whatever_order_the_row_came_in():
    body = orjson.dumps(legacy_shapes.lot(LOT_ROW)).decode()
    assert body == (
        '{"id":"4d0f44e9-e0f5-41b2-9cfa-add9d297eb6a","lot_code":"T-1","lot_type":"RAW",'
        '"production_run_id":null,"phase_id":null,"operator_id":null,"weight_kg":"100.5",'
        '"temperature_c":"4","metadata":{},"created_at":"2026-11-26T11:48:50.199Z"}'
    )


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (Decimal("4"), "4"),
        (Decimal("4.0"), "4.0"),
        (Decimal("100.50"), "100.50"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("1E+2"), "100"),
        (None, None),
    ],
)
def test_decimals_are_strings_that_keep_the_scale_they_were_given(stored, shown):
    assert legacy_shapes.decimal(stored) == shown


def test_timestamps_are_utc_with_milliseconds_truncated_and_a_z():
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2026, 11, 26, 13, 0, 0, 999_999, tzinfo=plus_two)
    assert legacy_shapes.timestamp(at) == "2026-11-26T11:00:00.999Z"
    on_the_second = datetime(2026, 11, 26, 11, 0, 5, tzinfo=UTC)
    assert legacy_shapes.timestamp(on_the_second) == "2026-11-26T11:00:05.000Z"
    assert legacy_shapes.timestamp(None) is None


def test_every_error_body_carries_the_message_as_detail_and_as_error():
    assert list(legacy_shapes.error("Lot not found").items()) == [
        ("detail", "Lot not found"),
        ("error", "Lot not found"),
    ]


def test_metadata_from_an_event_is_ordered_as_postgresql_jsonb_would_return_it():
    given = {"zeta": 1, "a": {"bb": 2, "c": 3}, "é": [{"yy": 1, "x": 2}]}
    ordered = legacy_shapes.jsonb_order(given)
    assert orjson.dumps(ordered).decode() == '{"a":{"c":3,"bb":2},"é":[{"x":2,"yy":1}],"zeta":1}'
