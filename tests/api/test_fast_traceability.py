"""The hot traceability path answers exactly as the route would, and only when it may.

`api/fast_trace.py` answers the plain success case of GET /api/traceability without
FastAPI's routing; everything else must reach the route, which owns every error answer.
"""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from api.fast_trace import FastTraceability
from api.routes import lots
from ledger.values import Role
from tests.api.test_metrics import sample, scrape


@pytest.fixture
def mix(client, auth) -> str:
    """A MIX lot made of two raw lots, and one skewer lot made of it."""
    writer = auth(Role.OPERATOR)
    for code in ("RAW-BEEF-9", "RAW-LAMB-9"):
        assert client.post("/api/lots", json={"lot_code": code, "weight_kg": "50.0"},
                           headers=writer).status_code == 201
    assert client.post("/api/lots", json={
        "lot_code": "MIX-9", "lot_type": "MIX", "weight_kg": 60,
        "inputs": [{"lot_code": "RAW-BEEF-9", "quantity_used_kg": "40.5"},
                   {"lot_code": "RAW-LAMB-9", "quantity_used_kg": 19.5}],
    }, headers=writer).status_code == 201
    assert client.post("/api/lots", json={
        "lot_code": "SKW-9", "inputs": [{"lot_code": "MIX-9", "quantity_used_kg": 10}],
    }, headers=writer).status_code == 201
    return "MIX-9"


def test_the_fast_answer_is_byte_for_byte_the_routes_answer(client, auth, mix, app_container):
    headers = auth(Role.VIEWER)
    app_container.access._entries.clear()  # cold: the route answers, and fills the cache

    by_route = client.get(f"/api/traceability/{mix}", headers=headers)
    by_fast_path = client.get(f"/api/traceability/{mix}", headers=headers)

    assert by_route.status_code == by_fast_path.status_code == 200
    assert by_fast_path.content == by_route.content
    assert by_fast_path.headers.items() == by_route.headers.items()
    assert b'"lot_code":"RAW-BEEF-9"' in by_fast_path.content
    text = scrape(client)
    assert sample(text, "flowviz_http_requests_total", method="GET",
                  path=lots.TRACEABILITY_PATH, status="200") == 2


class Fallthrough:
    """Stands for the FastAPI app behind the fast path: records what reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def call(fast: FastTraceability, path: str, token: str | None, method: str = "GET") -> int:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers,
             "root_path": ""}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(fast(scope, receive, send))
    return sent[0]["status"]


@pytest.fixture
def fast(app_container, client, mix) -> tuple[FastTraceability, Fallthrough]:
    behind = Fallthrough()
    route = next(r for r in lots.router.routes if r.path == lots.TRACEABILITY_PATH)
    return FastTraceability(behind, app_container, route), behind


def warm_token(client, auth, app_container, role: Role) -> str:
    headers = auth(role)
    assert client.get("/api/traceability/MIX-9", headers=headers).status_code == 200
    return headers["Authorization"].removeprefix("Bearer ")


def test_the_fast_path_answers_a_known_lot_for_an_active_cached_user(
    fast, client, auth, app_container
):
    fast_path, behind = fast
    token = warm_token(client, auth, app_container, Role.VIEWER)

    assert call(fast_path, "/api/traceability/MIX-9", token) == 200
    assert behind.paths == []


@pytest.mark.parametrize(
    ("path", "token", "method"),
    [
        ("/api/traceability/MIX-9", None, "GET"),  # no token: the route says 401
        ("/api/traceability/MIX-9", "not-a-jwt", "GET"),  # a bad one: 401 too
        ("/api/traceability/NO-SUCH-LOT", "VALID", "GET"),  # 404
        ("/api/traceability/MIX-9/graph", "VALID", "GET"),  # another route
        ("/api/traceability/MIX-9", "VALID", "POST"),  # 405
        ("/api/traceability/", "VALID", "GET"),
        ("/api/traceability/MIX\x00-9", "VALID", "GET"),
    ],
)
def test_everything_else_goes_on_to_the_route(fast, client, auth, app_container, path, token,
                                              method):
    fast_path, behind = fast
    valid = warm_token(client, auth, app_container, Role.VIEWER)

    status = call(fast_path, path, valid if token == "VALID" else token, method)

    assert status == 599
    assert behind.paths == [path]


def test_a_user_deactivated_or_not_yet_cached_goes_on_to_the_route(
    fast, client, auth, app_container
):
    fast_path, behind = fast
    token = warm_token(client, auth, app_container, Role.VIEWER)
    user_id = app_container.tokens.verify(token).user_id
    stamp, access = app_container.access._entries[user_id]

    app_container.access._entries[user_id] = (stamp, type(access)(access.role, False))
    assert call(fast_path, "/api/traceability/MIX-9", token) == 599
    app_container.access._entries.clear()
    assert call(fast_path, "/api/traceability/MIX-9", token) == 599
    assert len(behind.paths) == 2


def test_when_the_read_side_is_overloaded_the_answer_is_the_routes_503(
    client, auth, mix, app_container, monkeypatch
):
    """A pool that cannot hand out a connection in time is a 503 with Retry-After, as the
    route answers it, never a 500 from the layer in front of it."""
    from psycopg_pool import PoolTimeout  # noqa: PLC0415

    headers = auth(Role.VIEWER)
    assert client.get(f"/api/traceability/{mix}", headers=headers).status_code == 200

    async def overloaded(_lot_code):
        raise PoolTimeout("couldn't get a connection after 30.00 sec")

    monkeypatch.setattr(app_container.read_model, "traceability", overloaded)
    response = client.get(f"/api/traceability/{mix}", headers=headers)

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["detail"] and response.json()["error"]


def test_a_trace_that_cannot_be_rendered_is_the_routes_plain_500(
    client, auth, mix, app_container, monkeypatch
):
    """The fast layer sits outside FastAPI's server-error layer: a failure of its own
    goes on to the route, whose answer is the plain 500 (with `detail` and `error`)."""
    headers = auth(Role.VIEWER)
    assert client.get(f"/api/traceability/{mix}", headers=headers).status_code == 200

    def unrenderable(*_: object) -> bytes:
        raise ValueError("a lot row the renderer cannot read")

    monkeypatch.setattr("api.legacy_shapes.traceability", unrenderable)
    scanner = TestClient(client.app, raise_server_exceptions=False)

    response = scanner.get(f"/api/traceability/{mix}", headers=headers)

    assert response.status_code == 500
    assert set(response.json()) == {"detail", "error"}
    assert "renderer" not in response.text


def test_a_cached_user_in_the_last_second_of_the_entry_is_read_again_ahead(
    fast, client, auth, app_container
):
    """A busy user's entry is renewed before it expires, by one read in the background,
    so that the user's requests keep the fast path; an entry past its life never answers."""
    fast_path, behind = fast
    cache = app_container.access
    token = warm_token(client, auth, app_container, Role.VIEWER)
    user_id = app_container.tokens.verify(token).user_id
    stamp, access = cache._entries[user_id]

    aging = stamp - (cache.ttl_seconds - cache.refresh_ahead_seconds / 2)
    cache._entries[user_id] = (aging, access)
    assert call(fast_path, "/api/traceability/MIX-9", token) == 200
    assert behind.paths == [], "still within its life: answered from the cache"
    assert cache._entries[user_id][0] > aging, "and read again meanwhile"
    assert cache._entries[user_id][1] == access
    assert cache._refreshing == set()

    cache._entries[user_id] = (stamp - cache.ttl_seconds - 0.01, access)
    assert call(fast_path, "/api/traceability/MIX-9", token) == 599
    assert behind.paths == ["/api/traceability/MIX-9"]
