"""Read-your-writes: a 201 means the write is committed, and the operator's next read sees it.

With the projector running, the POST waits for the read tables and every following
GET finds the new lot. With the projector stopped, the POST still answers after the
configured wait, built from the event itself, and that body is byte for byte what the
read tables give once the projector has caught up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import orjson
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api import legacy_shapes
from api.composition import Container
from api.main import create_app
from ledger.values import SYSTEM_ACTOR_ID, Role
from projections.queries import LOT_COLUMNS

ROUNDS = 40
STALLED_WAIT = 0.2
PASSWORD = "cold room 4 degrees"

# Lots as the line registers them: plain, with decimals that keep their scale, with
# free-form metadata whose keys jsonb reorders, with unicode and negative temperatures.
LOT_BODIES = {
    "bare-raw-beef": {"lot_type": "RAW"},
    "weighed-raw-beef": {"lot_type": "RAW", "weight_kg": "100.50", "temperature_c": "4.0"},
    "frozen-with-metadata": {
        "lot_type": "FRZ",
        "weight_kg": 12.125,
        "temperature_c": -18.5,
        "metadata": {"supplier": "Müller GmbH", "z": 1, "aa": [1.5, "x", None], "ok": True},
    },
    "mix-with-nested-metadata": {
        "lot_type": "MIX",
        "weight_kg": 1e2,
        "metadata": {"recipe": {"spice_pct": 2.25, "salt": "1.8%"}, "line": 3, "note": "😀"},
    },
    # Scale readings in grams from a counter that overflows into exponent notation.
    "metadata-with-huge-counters": {
        "lot_type": "BULK",
        "metadata": {"grams": 1e20, "ticks": 1.5e16, "tiny": 1.5e-7, "u64": 18446744073709551615,
                     "neg": -1e25, "serial": 12345678901234567890123},
    },
}


def _trace_bytes_start(central: bytes) -> bytes:
    return b'{"central":' + central + b","


# --- projector running ------------------------------------------------------------------


@pytest.mark.parametrize("body_name", sorted(LOT_BODIES))
def test_every_registered_lot_is_traceable_by_the_very_next_request(client, auth, body_name):
    """An operator registers lot after lot; each 201 is followed by a trace that finds it."""
    writer, reader = auth(Role.OPERATOR), auth(Role.VIEWER)
    for n in range(ROUNDS):
        code = f"RYW-{body_name}-{n:03d}"
        created = client.post(
            "/api/lots", json={"lot_code": code, **LOT_BODIES[body_name]}, headers=writer
        )
        assert created.status_code == 201, created.text

        traced = client.get(f"/api/traceability/{code}", headers=reader)
        assert traced.status_code == 200, f"round {n}: {traced.text}"
        assert traced.content.startswith(_trace_bytes_start(created.content))


@pytest.mark.parametrize("body_name", sorted(LOT_BODIES))
def test_the_201_body_is_byte_for_byte_the_row_the_legacy_reports_read(
    client, auth, app_container, body_name
):
    """The POST answers from the event it recorded, without reading the row back; the
    old SQL reports read the `lots` row. Both must say exactly the same."""
    code = f"RYW-ROW-{body_name}"
    created = client.post(
        "/api/lots", json={"lot_code": code, **LOT_BODIES[body_name]}, headers=auth()
    )
    assert created.status_code == 201, created.text

    with app_container.read_pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {LOT_COLUMNS} FROM lots WHERE lot_code = %s", (code,)).fetchone()
    assert row is not None, "the 201 came before the read table held the lot"
    assert orjson.dumps(legacy_shapes.lot(row)) == created.content


def test_every_child_batch_shows_up_under_its_parent_at_once(client, auth):
    """A mixer keeps drawing 1 kg from one raw lot; the parent's trace lists each new mix."""
    writer = auth(Role.OPERATOR)
    parent = client.post(
        "/api/lots", json={"lot_code": "RYW-BEEF", "lot_type": "RAW", "weight_kg": 500},
        headers=writer,
    )
    assert parent.status_code == 201, parent.text
    for n in range(ROUNDS):
        child = client.post(
            "/api/lots",
            json={
                "lot_code": f"RYW-MIX-{n:03d}",
                "lot_type": "MIX",
                "inputs": [{"lot_code": "RYW-BEEF", "quantity_used_kg": 1}],
            },
            headers=writer,
        )
        assert child.status_code == 201, child.text
        trace = client.get("/api/traceability/RYW-BEEF", headers=writer).json()
        assert len(trace["children"]) == n + 1
        assert trace["children"][-1] == child.json()


@pytest.mark.parametrize(
    ("decision", "notes"),
    [("PASS", None), ("HOLD", "Probe read 9C at receiving dock"), ("FAIL", "Metal detector hit")],
)
def test_every_qc_decision_is_in_the_read_table_when_its_201_arrives(
    client, auth, app_container, decision, notes
):
    """A QC inspector records decision after decision; each is readable as soon as it is
    acknowledged."""
    writer = auth(Role.MANAGER)
    lot = client.post("/api/lots", json={"lot_code": f"RYW-QC-{decision}"}, headers=writer)
    assert lot.status_code == 201, lot.text
    for n in range(ROUNDS):
        recorded = client.post(
            "/api/qc-decisions",
            json={"lot_id": lot.json()["id"], "decision": decision, "notes": notes,
                  "temperature_c": f"{n % 7}.5"},
            headers=writer,
        )
        assert recorded.status_code == 201, recorded.text
        row = app_container.read_model.qc_decision(UUID(recorded.json()["id"]))
        assert row is not None, f"round {n}: decision not yet in the read table"
        assert orjson.dumps(legacy_shapes.qc_decision(row)) == recorded.content


# --- projector stopped ------------------------------------------------------------------


def test_the_serving_loop_listens_for_the_projector_itself_with_no_thread_of_its_own(
    client, auth
):
    """A worker's listener is a task on its event loop: a thread of its own took the
    interpreter lock from the loop on every projected batch."""
    headers = auth(Role.OPERATOR)
    for n in range(5):
        created = client.post("/api/lots", json={"lot_code": f"LOOP-{n}"}, headers=headers)
        assert created.status_code == 201
        assert client.get(f"/api/traceability/LOOP-{n}", headers=headers).status_code == 200

    assert "watermark" not in {thread.name for thread in threading.enumerate()}


@pytest.fixture
def stalled(make_container) -> Iterator[tuple[Container, TestClient, dict[str, str]]]:
    """The API up, its projector not running: nothing reaches the read tables by itself."""
    container = make_container(
        run_projector=False, flowviz_read_your_writes_timeout=STALLED_WAIT
    )
    container.ledger.register_user(
        email="shift.lead@plant.example",
        full_name="Shift Lead",
        role=Role.OPERATOR.value,
        password_hash=container.passwords.hash(PASSWORD),
        actor_id=SYSTEM_ACTOR_ID,
    )
    with TestClient(create_app(container=container)) as test_client:
        login = test_client.post(
            "/api/login", json={"email": "shift.lead@plant.example", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        yield container, test_client, {"Authorization": f"Bearer {login.json()['token']}"}


def _timed_post(client: TestClient, path: str, body: dict[str, Any], headers) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.post(path, json=body, headers=headers)
    return response, time.monotonic() - started


@pytest.mark.parametrize("body_name", sorted(LOT_BODIES))
def test_a_lot_acknowledged_while_the_projector_is_down_matches_its_later_row(
    stalled, body_name
):
    """The projector is down: the lot is still acknowledged after the wait, and the
    body the operator got is exactly what the trace shows once projection resumes."""
    container, client, headers = stalled
    code = f"STALLED-{body_name}"
    created, took = _timed_post(
        client, "/api/lots", {"lot_code": code, **LOT_BODIES[body_name]}, headers
    )
    assert created.status_code == 201, created.text
    assert STALLED_WAIT * 0.9 <= took < STALLED_WAIT + 2.0
    assert client.get(f"/api/traceability/{code}", headers=headers).status_code == 404

    container.projector.catch_up()

    traced = client.get(f"/api/traceability/{code}", headers=headers)
    assert traced.status_code == 200, traced.text
    assert traced.content.startswith(_trace_bytes_start(created.content))


@pytest.mark.parametrize(
    ("decision", "notes", "extra"),
    [
        ("PASS", None, {}),
        ("HOLD", "Label missing on pallet 4", {"temperature_c": "-0.50"}),
        (
            "FAIL",
            "Foreign body found in mix",
            {
                "digital_signature": "sig:ÄÖÜ-42",
                "qc_gate_id": "6f1c3a56-0000-4000-8000-000000000001",
            },
        ),
    ],
)
def test_a_qc_decision_acknowledged_while_the_projector_is_down_matches_its_later_row(
    stalled, decision, notes, extra
):
    """The projector is down: the QC decision is still acknowledged after the wait, and
    its body is byte for byte the row the read table holds after catching up."""
    container, client, headers = stalled
    lot, _ = _timed_post(client, "/api/lots", {"lot_code": f"STALLED-QC-{decision}"}, headers)
    assert lot.status_code == 201, lot.text

    recorded, took = _timed_post(
        client,
        "/api/qc-decisions",
        {"lot_id": lot.json()["id"], "decision": decision, "notes": notes, **extra},
        headers,
    )
    assert recorded.status_code == 201, recorded.text
    assert STALLED_WAIT * 0.9 <= took < STALLED_WAIT + 2.0
    decision_id = UUID(recorded.json()["id"])
    assert container.read_model.qc_decision(decision_id) is None

    container.projector.catch_up()

    row = container.read_model.qc_decision(decision_id)
    assert row is not None
    assert orjson.dumps(legacy_shapes.qc_decision(row)) == recorded.content


@pytest.mark.parametrize(
    "raw_metadata",
    [b'{"probe": Infinity}', b'{"probe": -Infinity}', b'{"probe": NaN}', b'{"probe": [1e400]}'],
)
def test_a_lot_with_an_unstorable_metadata_number_is_refused_and_projection_goes_on(
    stalled, raw_metadata
):
    """A faulty probe reports an infinite reading: the lot is refused with a 422 rather
    than recorded as an event the read tables could never hold."""
    container, client, headers = stalled
    refused = client.post(
        "/api/lots",
        content=b'{"lot_code": "PROBE-1", "metadata": ' + raw_metadata + b"}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert refused.status_code == 422, refused.text
    assert container.ledger.find_lot_by_code("PROBE-1") is None

    created, _ = _timed_post(client, "/api/lots", {"lot_code": "PROBE-2"}, headers)
    assert created.status_code == 201, created.text
    container.projector.catch_up()
    assert client.get("/api/traceability/PROBE-2", headers=headers).status_code == 200


@pytest.mark.parametrize("weight", [b"1e30", b"1e400", b"-1e25"])
def test_a_scale_glitch_weight_is_refused_with_a_clear_422(stalled, weight):
    """A scale glitch sends an absurd weight: the operator gets a 422 naming weight_kg."""
    container, client, headers = stalled
    refused = client.post(
        "/api/lots",
        content=b'{"lot_code": "GLITCH-1", "weight_kg": ' + weight + b"}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"].startswith("body.weight_kg")
    assert container.ledger.find_lot_by_code("GLITCH-1") is None
