"""The hot registration path records exactly what the route would, and only when it may.

`api/fast_post_lots.py` answers the plain case of POST /api/lots without FastAPI's
routing. Every refusal, whether the body's or the ledger's, must reach the route with
the body intact and be worded by it; nothing may be recorded twice or half-way.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import orjson
import pytest
from psycopg.rows import dict_row

from api import legacy_shapes
from api.fast_post_lots import FastPostLots
from api.routes import lots
from ledger.values import Role
from projections.queries import LOT_COLUMNS
from tests.api.test_metrics import sample, scrape
from tests.integration.faults import (
    losing_the_first_answer,
    losing_the_writer_threads_first_answer,
)

POST_LOTS = next(r for r in lots.router.routes if r.path == "/api/lots" and "POST" in r.methods)


def row_of(app_container, code: str) -> dict | None:
    sql = f"SELECT {LOT_COLUMNS} FROM lots WHERE lot_code = %s"
    with app_container.read_pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, (code,)).fetchone()


def registrations_of(app_container, code: str) -> int:
    if "\x00" in code:
        return 0  # the API refuses such codes, and PostgreSQL cannot compare them as text
    with app_container.read_pool.connection() as conn:
        return conn.execute(
            f"SELECT count(*) FROM {app_container.events_table}"
            " WHERE topic = 'ledger.lot:Lot.Registered' AND convert_from(state, 'UTF8')::jsonb"
            " ->> 'lot_code' = %s",
            (code,),
        ).fetchone()[0]


def test_the_fast_201_is_the_routes_201(client, auth, app_container):
    """The first POST of a user not yet in the access cache goes through the route; the
    next takes the fast path. Both answers are the row the legacy reports read."""
    headers = auth(Role.OPERATOR)
    app_container.access._entries.clear()
    body = {"lot_type": "RAW", "weight_kg": "100.50", "temperature_c": -1.5,
            "metadata": {"supplier": "Müller", "z": 1, "a": [1.5, None]}}

    by_route = client.post("/api/lots", json={"lot_code": "FP-ROUTE", **body}, headers=headers)
    by_fast_path = client.post("/api/lots", json={"lot_code": "FP-FAST", **body}, headers=headers)

    assert by_route.status_code == by_fast_path.status_code == 201
    for code, answer in (("FP-ROUTE", by_route), ("FP-FAST", by_fast_path)):
        assert answer.content == orjson.dumps(legacy_shapes.lot(row_of(app_container, code)))
    assert by_fast_path.headers["content-type"] == by_route.headers["content-type"]
    assert sample(scrape(client), "flowviz_http_requests_total", method="POST",
                  path="/api/lots", status="201") == 2


# A lot that is on HOLD, and one with 10 kg left, for the ledger's refusals below.
@pytest.fixture
def stock(client, auth):
    writer, manager = auth(Role.OPERATOR), auth(Role.MANAGER)
    held = client.post("/api/lots", json={"lot_code": "FP-HELD", "weight_kg": 50},
                       headers=writer).json()
    assert client.post("/api/qc-decisions", json={
        "lot_id": held["id"], "decision": "HOLD", "notes": "Probe read 9C at receiving",
    }, headers=manager).status_code == 201
    assert client.post("/api/lots", json={"lot_code": "FP-TEN", "weight_kg": 10},
                       headers=writer).status_code == 201


REFUSED = {
    "code taken": {"lot_code": "FP-TEN"},
    "input on hold": {"lot_code": "FP-X1", "inputs": [{"lot_code": "FP-HELD",
                                                       "quantity_used_kg": 1}]},
    "too many kg": {"lot_code": "FP-X2", "inputs": [{"lot_code": "FP-TEN",
                                                     "quantity_used_kg": "10.001"}]},
    "unknown input": {"lot_code": "FP-X3", "inputs": [{"lot_code": "FP-NONE",
                                                       "quantity_used_kg": 1}]},
    "negative weight": {"lot_code": "FP-X4", "weight_kg": -1},
    "unknown field": {"lot_code": "FP-X5", "colour": "red"},
    "NUL in code": {"lot_code": "FP-\u0000"},
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refusal_is_worded_by_the_route_whichever_path_took_the_request(
    client, auth, app_container, stock, case
):
    headers = auth(Role.OPERATOR)
    app_container.access._entries.clear()  # cold: the route alone
    by_route = client.post("/api/lots", json=REFUSED[case], headers=headers)
    warm = client.post("/api/lots", json=REFUSED[case], headers=headers)  # fast path first

    assert 400 <= by_route.status_code < 500, by_route.text
    assert (warm.status_code, warm.content) == (by_route.status_code, by_route.content)
    assert set(warm.json()) >= {"detail", "error"}
    assert registrations_of(app_container, REFUSED[case]["lot_code"]) == (
        1 if case == "code taken" else 0
    )


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b'{"lot_code": "FP-Y1",', "application/json"),  # malformed
     (b'{"lot_code": "FP-Y2"}', "text/plain"),
     (b'["FP-Y3"]', "application/json")],
)
def test_bodies_the_fast_path_does_not_take_get_the_routes_answer(
    client, auth, app_container, content, content_type
):
    headers = {**auth(Role.OPERATOR), "content-type": content_type}
    app_container.access._entries.clear()
    by_route = client.post("/api/lots", content=content, headers=headers)
    warm = client.post("/api/lots", content=content, headers=headers)
    assert (warm.status_code, warm.content) == (by_route.status_code, by_route.content)


def test_a_viewer_is_refused_by_the_route(client, auth, app_container):
    headers = auth(Role.VIEWER)
    assert client.get("/api/traceability/NONE", headers=headers).status_code == 404  # warm
    refused = client.post("/api/lots", json={"lot_code": "FP-V"}, headers=headers)
    assert refused.status_code == 403
    assert registrations_of(app_container, "FP-V") == 0


class Behind:
    """Stands for the FastAPI app behind the fast path: records the bodies that reach it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def post(fast: FastPostLots, token: str, body: bytes, chunk: int = 7) -> int:
    """POSTs `body` in small pieces, as a slow client's packets arrive."""
    headers = [(b"authorization", f"Bearer {token}".encode()),
               (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "method": "POST", "path": "/api/lots", "headers": headers,
             "root_path": "", "query_string": b""}
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": n < len(pieces) - 1}
                for n, p in enumerate(pieces)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(fast(scope, receive, send))
    return sent[0]["status"]


def test_the_fast_path_records_once_answers_the_ledgers_refusal_and_replays_the_rest_whole(
    client, auth, app_container
):
    headers = auth(Role.OPERATOR)
    assert client.get("/api/traceability/NONE", headers=headers).status_code == 404  # warm
    token = headers["Authorization"].removeprefix("Bearer ")
    behind = Behind()
    fast = FastPostLots(behind, app_container, POST_LOTS)
    appends = app_container.ledger.recorder.stats

    fresh = json.dumps({"lot_code": "FP-Z", "weight_kg": "12.5"}).encode()
    assert post(fast, token, fresh) == 201
    assert behind.bodies == []
    assert registrations_of(app_container, "FP-Z") == 1

    # The code is taken now. The ledger refuses it once, and the refusal is answered in
    # the route's words (test_a_refusal_is_worded_by_the_route...) without a second try.
    attempts_before = appends.appends
    assert post(fast, token, fresh) == 409
    assert behind.bodies == []
    assert appends.appends - attempts_before == 1
    assert registrations_of(app_container, "FP-Z") == 1

    # A body the route itself refuses reaches it whole, however it arrived.
    negative = json.dumps({"lot_code": "FP-Y", "weight_kg": "-1"}).encode()
    assert post(fast, token, negative) == 599
    assert behind.bodies == [negative]
    assert registrations_of(app_container, "FP-Y") == 0


def test_when_the_database_drops_every_connection_a_post_is_201_or_503_and_201_is_recorded(
    client, auth, app_container
):
    """A failover (or an operator's pg_terminate_backend) cuts every connection the server
    holds, between two POSTs: here, every other connection to the test database. Each POST
    is then recorded and answered 201, or answered 503 with Retry-After and recorded
    nothing; never a 500. The server recovers by itself."""
    import psycopg  # noqa: PLC0415

    headers = auth(Role.OPERATOR)
    assert client.post("/api/lots", json={"lot_code": "FO-0"}, headers=headers).status_code == 201
    with psycopg.connect(app_container.settings.database_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()[0]
    assert cut > 0

    answers = {}
    for n in range(1, 6):
        code = f"FO-{n}"
        answers[code] = client.post("/api/lots", json={"lot_code": code}, headers=headers)

    for code, answer in answers.items():
        assert answer.status_code in (201, 503), (code, answer.status_code, answer.text)
        if answer.status_code == 503:
            body = answer.json()
            assert body["detail"] and body["error"] and answer.headers["Retry-After"]
            assert registrations_of(app_container, code) == 0
        else:
            assert registrations_of(app_container, code) == 1
    last = client.post("/api/lots", json={"lot_code": "FO-LAST"}, headers=headers)
    assert last.status_code == 201, last.text
    assert row_of(app_container, "FO-LAST")["lot_code"] == "FO-LAST"


def test_a_post_whose_commit_answer_was_lost_is_answered_201_with_its_own_lot(
    client, auth, app_container, monkeypatch
):
    """The connection breaks after PostgreSQL committed the lot, before the answer came
    back. The terminal gets the 201 for its lot, not a 409 for its own code."""
    headers = auth(Role.OPERATOR)
    assert client.get("/api/traceability/NONE", headers=headers).status_code == 404  # warm
    lost = losing_the_first_answer(monkeypatch)

    answer = client.post("/api/lots", json={"lot_code": "FP-LOST"}, headers=headers)

    assert lost
    assert answer.status_code == 201, answer.text
    assert answer.content == orjson.dumps(legacy_shapes.lot(row_of(app_container, "FP-LOST")))
    assert registrations_of(app_container, "FP-LOST") == 1


def test_a_mix_whose_commit_answer_was_lost_is_answered_201_not_503(
    client, auth, app_container, monkeypatch
):
    """A lot made of other lots is committed by the writer thread. Its answer lost, the
    operator gets the 201 for the mix, and the raw beef is drawn once."""
    headers = auth(Role.OPERATOR)
    raw = client.post("/api/lots", json={"lot_code": "FP-RAW", "weight_kg": "50"},
                      headers=headers)
    assert raw.status_code == 201, raw.text
    lost = losing_the_writer_threads_first_answer(monkeypatch)

    answer = client.post(
        "/api/lots",
        json={"lot_code": "FP-MIX", "lot_type": "MIX",
              "inputs": [{"lot_code": "FP-RAW", "quantity_used_kg": "20"}]},
        headers=headers,
    )

    assert lost
    assert answer.status_code == 201, answer.text
    assert answer.content == orjson.dumps(legacy_shapes.lot(row_of(app_container, "FP-MIX")))
    assert registrations_of(app_container, "FP-MIX") == 1
    with app_container.read_pool.connection() as conn:
        drawn = conn.execute(
            "SELECT sum(quantity_used_kg) FROM lot_genealogy g JOIN lots p"
            " ON p.id = g.parent_lot_id WHERE p.lot_code = 'FP-RAW'"
        ).fetchone()[0]
    assert drawn == Decimal("20")


def test_a_registered_lot_that_cannot_be_answered_is_a_plain_500_recorded_once(
    client, auth, app_container, monkeypatch
):
    """Once the ledger has committed, the route must not try again (it would be refused
    as a taken code). The fast layer sits outside FastAPI's server-error layer, so it
    answers the plain 500 itself, with `detail` and `error`; the lot stays recorded once."""

    headers = auth(Role.OPERATOR)
    # The first POST puts the operator in the access cache; the next takes the fast path.
    first = client.post("/api/lots", json={"lot_code": "RAW-FIRST"}, headers=headers)
    assert first.status_code == 201

    async def unanswerable(*_: object) -> None:
        raise RuntimeError("SELECT ... the watermark's connection is gone")

    monkeypatch.setattr("api.fast_post_lots.created_lot", unanswerable)

    response = client.post(
        "/api/lots", json={"lot_code": "RAW-ANSWER-LOST", "weight_kg": "12.5"}, headers=headers
    )

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "error": "Internal server error"}
    assert registrations_of(app_container, "RAW-ANSWER-LOST") == 1
