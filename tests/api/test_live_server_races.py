"""Real concurrent HTTP against a real uvicorn: what happens when the whole shift clicks at once.

The server runs in a background thread on a free port, with its projector running;
requests go out from a thread pool over real sockets, so they overlap in the server.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from api.joined_writes import JoinedWritesProtocol
from api.main import create_app
from ledger.values import SYSTEM_ACTOR_ID, Role
from tests.served_uvicorn import served

PASSWORD = "night shift password"


@pytest.fixture
def live_container(make_container):
    return make_container(run_projector=True, db_pool_size=8)


@pytest.fixture
def base_url(live_container) -> Iterator[str]:
    # Through the protocol `flowviz serve` runs.
    with served(create_app(container=live_container), http=JoinedWritesProtocol) as url:
        yield url


@pytest.fixture
def headers(live_container, base_url) -> dict[str, str]:
    live_container.ledger.register_user(
        email="line.operator@plant.example",
        full_name="Line Operator",
        role=Role.OPERATOR.value,
        password_hash=live_container.passwords.hash(PASSWORD),
        actor_id=SYSTEM_ACTOR_ID,
    )
    login = httpx.post(
        f"{base_url}/api/login",
        json={"email": "line.operator@plant.example", "password": PASSWORD},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


@pytest.fixture
def fire(base_url, headers) -> Callable[[list[dict]], list[httpx.Response]]:
    """POSTs every body to /api/lots at the same moment, one thread and connection each."""

    def post_all(bodies: list[dict]) -> list[httpx.Response]:
        barrier = threading.Barrier(len(bodies))

        def post(body: dict) -> httpx.Response:
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
                barrier.wait(10)
                return http.post("/api/lots", json=body)

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            return list(pool.map(post, bodies))

    return post_all


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def test_ten_terminals_registering_the_same_lot_code_get_one_201_and_nine_409s(fire):
    """Ten scanners read the same pallet label at once: one lot is registered, nine are told
    the code already exists, and nobody sees a server error."""
    responses = fire([{"lot_code": "PALLET-0042", "lot_type": "RAW"} for _ in range(10)])

    assert statuses(responses) == {201: 1, 409: 9}, [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"] == "Lot code already exists"


def test_twenty_mixers_drawing_from_one_100kg_lot_get_exactly_ten_portions(
    fire, base_url, headers
):
    """A 100 kg raw lot, twenty mixers each drawing 10 kg at once: exactly ten succeed,
    the rest are refused, and the raw lot's trace lists exactly those ten children."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        parent = http.post(
            "/api/lots", json={"lot_code": "RAW-BEEF-100", "lot_type": "RAW", "weight_kg": 100}
        )
    assert parent.status_code == 201, parent.text

    responses = fire(
        [
            {
                "lot_code": f"MIX-{n:02d}",
                "lot_type": "MIX",
                "inputs": [{"lot_code": "RAW-BEEF-100", "quantity_used_kg": 10}],
            }
            for n in range(20)
        ]
    )

    assert statuses(responses) == {201: 10, 409: 10}, [r.text for r in responses]
    made = {r.json()["lot_code"] for r in responses if r.status_code == 201}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        trace = http.get("/api/traceability/RAW-BEEF-100")
    assert trace.status_code == 200, trace.text
    assert {c["lot_code"] for c in trace.json()["children"]} == made
    assert len(trace.json()["children"]) == 10


@pytest.mark.parametrize(("codes", "copies"), [(40, 1), (15, 4)])
def test_every_201_under_load_is_one_lot_row_and_one_registered_event(
    fire, live_container, database_url, schema, codes, copies
):
    """A burst of registrations, some codes sent from several terminals: the count of 201s
    equals the lots in the read table and the Lot.Registered events in the log."""
    bodies = [{"lot_code": f"BURST-{n:03d}", "lot_type": "DEB"} for n in range(codes)] * copies
    responses = fire(bodies)

    counted = statuses(responses)
    unexpected = [r.text for r in responses if r.status_code not in (201, 409)]
    assert set(counted) <= {201, 409}, unexpected
    assert counted[201] == codes

    with psycopg.connect(database_url, autocommit=True) as conn:
        lots = conn.execute(
            SQL("SELECT count(*) FROM {}.lots WHERE lot_code LIKE 'BURST-%%'").format(
                Identifier(schema)
            )
        ).fetchone()[0]
        events = conn.execute(
            SQL("SELECT count(*) FROM {}.{} WHERE topic LIKE %s").format(
                Identifier(schema), Identifier(live_container.events_table)
            ),
            ("%Lot.Registered",),
        ).fetchone()[0]
    assert lots == counted[201]
    assert events == counted[201]
