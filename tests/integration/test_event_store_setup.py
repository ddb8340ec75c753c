"""Several API workers start at the same moment on one database."""

from __future__ import annotations

import threading

from ledger.application import Ledger
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
