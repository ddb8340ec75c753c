"""Events are written by orjson, yet their bytes are the library's JSON, byte for byte:
logs written before read the same, and every hash over an event's bytes still holds."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError

from ledger.application import Ledger
from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.transcoder import TaggingJSONTranscoder
from ledger.values import SYSTEM_ACTOR_ID

AWKWARD_TEXT = "Kebab \"Adana\" \\ tab\t nl\n \x00\x1f\x7f é € 😀 \u2028 \ufeff"


def with_the_ledgers_transcodings(transcoder: JSONTranscoder) -> JSONTranscoder:
    Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}).register_transcodings(transcoder)
    return transcoder


def a_day_at_the_plant() -> Ledger:
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ledger.register_user(
        email="qc@plant.example", full_name=AWKWARD_TEXT, role="qc_inspector",
        password_hash="$2b$04$x", actor_id=SYSTEM_ACTOR_ID,
    )
    raw = ledger.register_lot(
        NewLot("RAW-BEEF-1", "RAW", weight_kg=Decimal("120.50"), temperature_c=Decimal("-1.5"),
               metadata_json='{"supplier": "Çiftlik \\u00e9"}'),
        actor_id=SYSTEM_ACTOR_ID,
    ).aggregate
    ledger.register_lot(
        NewLot(f"MIX-{AWKWARD_TEXT}", "MIX",
               inputs=(InputRef(Decimal("80.25"), lot_id=raw.id),)),
        actor_id=None,
    )
    ledger.record_qc_decision(
        NewQcDecision(raw.id, "HOLD", notes=f"Metal detector alarm {AWKWARD_TEXT}"),
        actor_id=SYSTEM_ACTOR_ID,
    )
    ledger.take_snapshot(raw.id)  # a snapshot carries the QC history's records
    return ledger


def test_every_event_of_a_day_at_the_plant_is_written_as_the_library_writes_it():
    ledger = a_day_at_the_plant()
    library = with_the_ledgers_transcodings(JSONTranscoder())
    assert isinstance(ledger.mapper.transcoder, TaggingJSONTranscoder)

    written = [n.state for n in ledger.recorder.select_notifications(start=1, limit=100)]
    raw_id = ledger.find_lot_by_code("RAW-BEEF-1").id
    written += [s.state for s in ledger.snapshots.recorder.select_events(raw_id)]

    assert len(written) == 9  # user, email, 2 lots, 2 claims, consumption, HOLD; snapshot
    for state in written:
        assert library.encode(library.decode(state)) == state
        assert ledger.mapper.transcoder.decode(state) == library.decode(state)


class Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        {"weight": 1.5e16, "ratio": 0.1},  # floats: Python writes 1e+16, orjson 1e16
        {"status": Colour.RED},  # a subclass of str
        {"big": 2**70, "small": -(2**70)},  # beyond 64 bits
        {7: "a key that is not a string", "id": UUID(int=1)},
        {"nested": [{"kg": Decimal("2.5"), "ids": (UUID(int=2), None, True)}]},
    ],
)
def test_what_orjson_would_write_otherwise_is_left_to_the_library(value):
    ours = with_the_ledgers_transcodings(TaggingJSONTranscoder())
    library = with_the_ledgers_transcodings(JSONTranscoder())

    assert ours.encode(value) == library.encode(value)


@pytest.mark.parametrize(
    "value",
    [
        Decimal("1E+2"), Decimal("-0"), Decimal("0.0000001"), Decimal("812.50"),
        UUID(int=0), UUID("12345678-1234-5678-1234-567812345678"),
        datetime(2026, 11, 28, 6, 0, tzinfo=UTC),  # no microseconds: none written
        datetime(2026, 11, 28, 7, 0, 1, 5, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 11, 28, 6, 0, 1, 999_999),  # naive
    ],
)
def test_the_values_tagged_directly_are_written_as_their_transcodings_write_them(value):
    """UUIDs, decimals and datetimes in an event are tagged without a call into their
    transcodings; the strings must be the ones those transcodings give."""
    ours = with_the_ledgers_transcodings(TaggingJSONTranscoder())
    library = with_the_ledgers_transcodings(JSONTranscoder())

    event = {"at": value, "inputs": [{"kg": value}]}
    assert ours.encode(event) == library.encode(event)


def test_a_type_with_no_transcoding_is_refused_as_the_library_refuses_it():
    class Pallet:
        pass

    with pytest.raises(TranscodingNotRegisteredError):
        TaggingJSONTranscoder().encode({"pallet": Pallet()})


def test_the_instant_remembered_for_the_second_event_is_never_another_instants():
    """A registration's two events share one instant, written once; an event at another
    instant, even one equal to it in another zone, is written as itself."""
    transcoder = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper.transcoder
    first = datetime(2026, 11, 28, 6, 0, 1, 5, tzinfo=UTC)
    same_instant_elsewhere = first.astimezone(timezone(timedelta(hours=3)))
    later = datetime(2026, 11, 28, 6, 0, 2, tzinfo=UTC)

    written = [transcoder.encode({"at": at}) for at in (first, first, later, first,
                                                        same_instant_elsewhere)]

    assert written == [
        b'{"at":{"_type_":"datetime_iso","_data_":"%s"}}' % at.isoformat().encode()
        for at in (first, first, later, first, same_instant_elsewhere)
    ]
