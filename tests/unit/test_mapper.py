"""The ledger writes each event's stored form itself (`LedgerMapper`); what it writes must
be what the library's own mapper writes, field for field and byte for byte: the hash
chain is over those bytes, and logs written before must read the same."""

from __future__ import annotations

from dataclasses import fields

from eventsourcing.compressor import ZlibCompressor
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Mapper, StoredEvent

from ledger.application import Ledger
from ledger.mapper import LedgerMapper
from tests.unit.test_transcoder import a_day_at_the_plant


def test_every_event_of_a_day_at_the_plant_is_stored_as_the_library_stores_it():
    ledger = a_day_at_the_plant()
    assert type(ledger.mapper) is LedgerMapper
    library = Mapper(transcoder=ledger.mapper.transcoder)

    events = [ledger.mapper.to_domain_event(n) for n in ledger.recorder.select_notifications(
        start=1, limit=100)]
    assert len(events) == 8  # user, email, 2 lots, 2 claims, consumption, HOLD
    for domain_event in events:
        ours, theirs = ledger.mapper.to_stored_event(domain_event), library.to_stored_event(
            domain_event)
        assert type(ours) is StoredEvent
        assert ours == theirs
        assert vars(ours) == vars(theirs)
        assert [getattr(ours, f.name) for f in fields(StoredEvent)] == list(vars(ours).values())


class Pallet(Aggregate):
    class Wrapped(Aggregate.Event):
        class_version = 3
        film: str

    @event(Wrapped)
    def wrap(self, film: str) -> None:
        self.film = film


def test_an_event_class_of_a_later_version_is_stored_with_its_version():
    pallet = Pallet()
    pallet.wrap(film="PE-23")
    wrapped = pallet.collect_events()[-1]
    ours = LedgerMapper(transcoder=Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
                        .mapper.transcoder)
    library = Mapper(transcoder=ours.transcoder)

    stored = ours.to_stored_event(wrapped)
    assert b'"class_version":3' in stored.state
    assert stored == library.to_stored_event(wrapped)
    assert ours.to_domain_event(stored) == wrapped


def test_a_compressed_log_is_written_as_the_library_compresses_it():
    transcoder = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper.transcoder
    ours = LedgerMapper(transcoder=transcoder, compressor=ZlibCompressor())
    library = Mapper(transcoder=transcoder, compressor=ZlibCompressor())
    pallet = Pallet()
    pallet.wrap(film="PE-23")

    for domain_event in pallet.collect_events():
        assert ours.to_stored_event(domain_event) == library.to_stored_event(domain_event)

