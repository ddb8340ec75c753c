"""A batch's events reach the append function as the bytes psycopg itself would send.

The writers build the `stored_event[]` argument in one pass (`ledger/event_array.py`)
instead of through psycopg's generic composite adapters. PostgreSQL must read exactly what
it read before: the same bytes for the same events, and the same rows in the log.
"""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from psycopg.adapt import PyFormat, Transformer
from psycopg.types.composite import CompositeInfo

from ledger.appends import Append
from ledger.event_array import EventArray, event_array_dumper


def awkward_batch() -> list[Append]:
    """Two requests' events: a lot and its code claim, then a lot at a late version with a
    Unicode topic, an empty state and a large one."""
    lot, claim = uuid4(), uuid4()
    return [
        Append([
            StoredEvent(lot, 1, "ledger.lot:Lot.Registered", b'{"lot_code":"RAW-1"}'),
            StoredEvent(claim, 1, "ledger.lot:LotCode.Claimed", b'{"lot_id":"x"}'),
        ]),
        Append([
            StoredEvent(uuid4(), 2**40, "ledger.lot:Lot.Ünïcode€", b""),
            StoredEvent(UUID(int=0), 7, "t", bytes(range(256)) * 300),
        ]),
    ]


def composite_of(recorder) -> CompositeInfo:
    return recorder.datastore.psycopg_type_adapters[recorder.stored_event_type_name]


def test_the_batch_is_dumped_to_the_same_bytes_as_psycopg_dumps_its_composites(ledger):
    recorder, batch = ledger.recorder, awkward_batch()
    with recorder.datastore.get_connection() as conn:
        composites = [
            recorder.construct_pg_stored_event(
                e.originator_id, e.originator_version, e.topic, e.state
            )
            for append in batch for e in append.events
        ]
        transformer = Transformer(conn)
        psycopgs = transformer.get_dumper(composites, PyFormat.BINARY)
        ours = event_array_dumper(composite_of(recorder))(EventArray)

        assert ours.oid == psycopgs.oid == composite_of(recorder).array_oid
        assert ours.dump(EventArray(batch)) == bytes(psycopgs.dump(composites))


def log_rows(recorder, ids: list[int]) -> list[tuple]:
    with recorder.datastore.get_connection() as conn:
        rows = conn.execute(
            f'SELECT originator_id, originator_version, topic, state FROM'
            f' "{recorder.datastore.schema}"."{recorder.events_table_name}"'
            " WHERE notification_id = ANY(%s) ORDER BY notification_id",
            (ids,),
        ).fetchall()
    return [tuple(row.values()) for row in rows]


def as_rows(batch: list[Append]) -> list[tuple]:
    return [
        (e.originator_id, e.originator_version, e.topic, e.state)
        for append in batch for e in append.events
    ]


@pytest.mark.parametrize("writer", ["writer thread", "event loop's writer task"])
def test_the_log_holds_exactly_the_events_given(ledger, writer):
    recorder, batch = ledger.recorder, awkward_batch()
    events = [e for append in batch for e in append.events]
    if writer == "writer thread":
        ids = list(recorder.insert_events(events))
    else:
        ids = list(asyncio.run(recorder.insert_events_async(events)))

    assert log_rows(recorder, ids) == as_rows(batch)


def test_a_composite_of_other_field_types_is_refused_at_once(ledger):
    info = composite_of(ledger.recorder)
    other = CompositeInfo(info.name, info.oid, info.array_oid,
                          field_names=info.field_names, field_types=[25, 20, 25, 17])

    with pytest.raises(TypeError, match="not \\(uuid, int8, text, bytea\\)"):
        event_array_dumper(other)
