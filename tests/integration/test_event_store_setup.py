"""Several API workers start at the same moment on one database."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import PersistenceError

from ledger.application import Ledger
from ledger.commands import NewLot
from ledger.event_store import ensure_schema, postgres_env


def test_workers_starting_together_all_set_up_the_event_store(database_url, schema):
    """Each worker creates or replaces the store's tables, functions and triggers; done
    at once, PostgreSQL would fail some with "tuple concurrently updated"."""
    ensure_schema(database_url, schema)
    errors: list[Exception] = []
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        try:
            Ledger(postgres_env(database_url, schema=schema, pool_size=2)).close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    assert errors == []


def test_a_closed_writer_refuses_appends_instead_of_leaving_them_waiting(
    database_url, schema
):
    """At shutdown, an append that arrives after the writer stopped must fail, not hang."""
    ensure_schema(database_url, schema)
    ledger = Ledger(postgres_env(database_url, schema=schema, pool_size=2))
    lot = ledger.register_lot(NewLot(lot_code="RAW-1", weight_kg=Decimal(5)), actor_id=None)
    beef = lot.aggregate
    beef.consume(child_lot_id=uuid4(), quantity_kg=Decimal(1), actor_id=None)
    pending = [ledger.mapper.to_stored_event(e) for e in beef.collect_events()]

    ledger.recorder.close_writer()

    with pytest.raises(PersistenceError, match="closed"):
        ledger.recorder.insert_events(pending)
    ledger.close()


def test_a_closed_writer_refuses_a_registration_from_an_event_loop(database_url, schema):
    """The same at shutdown for a POST on the event loop: refused at once, not awaited
    forever on a writer that will never wake its loop."""
    ensure_schema(database_url, schema)
    ledger = Ledger(postgres_env(database_url, schema=schema, pool_size=2))
    ledger.register_lot(NewLot(lot_code="RAW-1", weight_kg=Decimal(5)), actor_id=None)

    ledger.recorder.close_writer()

    async def late_post():
        return await asyncio.wait_for(
            ledger.register_lot_async(NewLot(lot_code="RAW-LATE"), actor_id=None), timeout=5
        )

    with pytest.raises(PersistenceError, match="closed"):
        asyncio.run(late_post())
    ledger.close()
