"""Response bodies as the legacy clients read them: as TEXT, key by key, byte by byte.

The frontend and the operators' snapshot scripts diff bodies as text, so these tests
compare raw response text and key order, not just parsed values.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from api.demo import load_demo
from ledger.values import Role

CONTRACT = Path("/work/shared/contract")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Written out here, not imported from the app: the contract is the source of truth.
LOT_KEYS = [
    "id", "lot_code", "lot_type", "production_run_id", "phase_id", "operator_id",
    "weight_kg", "temperature_c", "metadata", "created_at",
]
QC_KEYS = [
    "id", "lot_id", "qc_gate_id", "operator_id", "decision", "notes", "temperature_c",
    "digital_signature", "decided_at",
]
USER_KEYS = ["id", "email", "full_name", "role", "created_at", "last_login"]


def ordered(text: str):
    """Parses keeping key order (a list of pairs per object), to compare order exactly."""
    return json.loads(text, object_pairs_hook=lambda pairs: pairs)


def keys(pairs) -> list[str]:
    return [k for k, _ in pairs]


def assert_express_json(response) -> None:
    """What Express's res.json sends: application/json, compact, non-ASCII left raw."""
    assert response.headers["content-type"].startswith("application/json")
    compact = json.dumps(response.json(), separators=(",", ":"), ensure_ascii=False)
    assert response.text == compact
    assert "\\u" not in response.text


def assert_lot_row(row: dict) -> None:
    assert list(row) == LOT_KEYS
    assert UUID_RE.match(row["id"])
    assert TIMESTAMP.match(row["created_at"])
    for key in ("production_run_id", "phase_id", "operator_id"):
        assert row[key] is None or UUID_RE.match(row[key])
    for key in ("weight_kg", "temperature_c"):
        assert row[key] is None or isinstance(row[key], str)


def wait_until_projected(container) -> None:
    head = container.ledger.recorder.max_notification_id() or 0
    assert container.watermark.wait_for(head, 10), "projector did not catch up"


@pytest.fixture
def operator(auth):
    return auth(Role.OPERATOR)


@pytest.fixture
def register(client, operator):
    def post(**body):
        response = client.post("/api/lots", json=body, headers=operator)
        assert response.status_code == 201, response.text
        return response

    return post


def trace(client, headers, code: str):
    return client.get(f"/api/traceability/{quote(code, safe='')}", headers=headers)


def trace_as_a_server_would(client, headers, code: str):
    """Starlette's TestClient percent-decodes the path twice ("%252F" arrives as "/");
    a real server (and httpx's ASGI transport) decodes it once, as the frontend expects."""

    async def get():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(f"/api/traceability/{quote(code, safe='')}", headers=headers)

    return asyncio.run(get())


# --- health ---------------------------------------------------------------------------


def test_the_health_probe_answers_status_then_timestamp_in_compact_json(client):
    response = client.get("/api/health")

    assert response.status_code == 200
    assert_express_json(response)
    body = ordered(response.text)
    assert keys(body) == ["status", "timestamp"]
    assert response.json()["status"] == "ok"
    assert TIMESTAMP.match(response.json()["timestamp"])
    assert response.text.startswith('{"status":"ok","timestamp":"')


# --- lot rows -------------------------------------------------------------------------


def test_registering_a_raw_lot_answers_the_legacy_lot_row_as_text(client, operator):
    example = json.loads((CONTRACT / "examples/create-lot.json").read_text())

    response = client.post("/api/lots", json=example["request"]["body"], headers=operator)

    assert response.status_code == example["status"] == 201
    assert_express_json(response)
    body = response.json()
    assert keys(ordered(response.text)) == LOT_KEYS
    assert_lot_row(body)
    expected = example["response"]
    for key in ("lot_code", "lot_type", "production_run_id", "phase_id", "weight_kg",
                "temperature_c", "metadata"):
        assert body[key] == expected[key], key
    assert re.fullmatch(
        r'\{"id":"[0-9a-f-]{36}","lot_code":"T-1","lot_type":"RAW","production_run_id":null,'
        r'"phase_id":null,"operator_id":"[0-9a-f-]{36}","weight_kg":"100\.5",'
        r'"temperature_c":"4","metadata":\{\},"created_at":"[0-9T:.\-]{23}Z"\}',
        response.text,
    )


@pytest.mark.parametrize(
    ("raw_weight", "shown"),
    [
        ("100.5", '"100.5"'),
        ("4", '"4"'),
        ("4.0", '"4.0"'),
        ("4.50", '"4.50"'),
        ('"4.50"', '"4.50"'),
        ('"12.5"', '"12.5"'),
        ("1e2", '"100"'),
        ("0", '"0"'),
        ("10000", '"10000"'),
        ("0.001", '"0.001"'),
        (None, "null"),
    ],
    ids=["100.5", "int", "4.0", "4.50", "str-4.50", "str-12.5", "1e2", "zero", "max", "milli",
         "absent"],
)
def test_a_weighed_lot_shows_its_weight_as_a_string_keeping_its_scale(
    client, operator, raw_weight, shown
):
    code = f"SCALE-{raw_weight}".replace('"', "'")
    field = "" if raw_weight is None else f',"weight_kg":{raw_weight}'
    body = f'{{"lot_code":"{code}"{field}}}'

    created = client.post(
        "/api/lots", content=body, headers={**operator, "Content-Type": "application/json"}
    )

    assert created.status_code == 201, created.text
    assert f'"weight_kg":{shown},' in created.text
    traced = trace(client, operator, code)
    assert f'"weight_kg":{shown},' in traced.text


@pytest.mark.parametrize(
    ("raw_temperature", "shown"),
    [("4", '"4"'), ("4.0", '"4.0"'), ("-18.25", '"-18.25"'), ('"-50"', '"-50"'),
     ("100", '"100"'), (None, "null")],
)
def test_a_chilled_lot_shows_its_temperature_as_a_string_keeping_its_scale(
    client, operator, raw_temperature, shown
):
    field = "" if raw_temperature is None else f',"temperature_c":{raw_temperature}'
    created = client.post(
        "/api/lots",
        content=f'{{"lot_code":"CHILL"{field}}}',
        headers={**operator, "Content-Type": "application/json"},
    )

    assert created.status_code == 201, created.text
    assert f'"temperature_c":{shown},' in created.text


def test_a_lot_named_in_french_keeps_its_accents_raw_in_every_answer(client, register, operator):
    code = "Bœuf haché – lot №7 (été)"
    metadata = {"fournisseur": "Boucherie Émile", "origine": "Bœuf charolais"}

    created = register(lot_code=code, lot_type="RAW", metadata=metadata)
    traced = trace(client, operator, code)

    for response in (created, traced):
        assert_express_json(response)
        assert code in response.text
        assert "Boucherie Émile" in response.text
    assert created.json()["metadata"] == metadata


def test_the_registration_answer_and_the_trace_show_the_same_lot_byte_for_byte(
    client, register, operator
):
    created = register(
        lot_code="SKW-2024-0117",
        lot_type="SKW",
        production_run_id="5F0C4E2A-1B3D-4C5E-8F90-A1B2C3D4E5F6",
        phase_id="0b7e1a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        weight_kg="250.750",
        temperature_c=-2.5,
        metadata={"skewer": {"length_cm": 60, "layers": ["beef", "spice"]}, "line": "B"},
    )

    traced = trace(client, operator, "SKW-2024-0117")

    assert traced.status_code == 200
    central_text = traced.text[len('{"central":'):traced.text.index(',"parents":')]
    assert central_text == created.text
    body = created.json()
    assert body["production_run_id"] == "5f0c4e2a-1b3d-4c5e-8f90-a1b2c3d4e5f6"
    assert body["weight_kg"] == "250.750"
    assert body["temperature_c"] == "-2.5"
    assert body["metadata"] == {"skewer": {"length_cm": 60, "layers": ["beef", "spice"]},
                                "line": "B"}


# --- QC decision rows -----------------------------------------------------------------


def test_a_qc_pass_answers_the_legacy_decision_row_as_text(client, register, operator):
    lot = register(lot_code="RAW-QC-1", weight_kg=10).json()
    gate = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    me = client.post(
        "/api/login", json={"email": "operator@plant.example", "password": "correct horse battery"}
    ).json()["user"]["id"]

    response = client.post(
        "/api/qc-decisions",
        content=f'{{"lot_id":"{lot["id"]}","decision":"PASS","notes":"ok","qc_gate_id":"{gate}",'
        '"temperature_c":4.50}',
        headers={**operator, "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert_express_json(response)
    assert keys(ordered(response.text)) == QC_KEYS
    body = response.json()
    assert UUID_RE.match(body["id"])
    assert body["lot_id"] == lot["id"]
    assert body["qc_gate_id"] == gate
    assert body["operator_id"] == me
    assert body["decision"] == "PASS"
    assert body["notes"] == "ok"
    assert body["temperature_c"] == "4.50"
    assert body["digital_signature"] is None
    assert TIMESTAMP.match(body["decided_at"])


def test_a_qc_decision_without_temperature_shows_null_not_a_missing_key(
    client, register, operator
):
    lot = register(lot_code="RAW-QC-2").json()

    response = client.post(
        "/api/qc-decisions",
        json={"lot_id": lot["id"], "decision": "HOLD", "notes": "Awaiting lab result",
              "digital_signature": "sig:jdoe:2024"},
        headers=operator,
    )

    assert response.status_code == 201, response.text
    assert '"temperature_c":null,"digital_signature":"sig:jdoe:2024","decided_at":"' in (
        response.text
    )


# --- login ----------------------------------------------------------------------------


def test_a_login_answers_user_then_token_with_the_user_columns_in_legacy_order(
    client, add_user
):
    email = add_user(Role.MANAGER, email="manager@plant.example")

    response = client.post(
        "/api/login", json={"email": email, "password": "correct horse battery"}
    )

    assert response.status_code == 200
    assert_express_json(response)
    body = ordered(response.text)
    assert keys(body) == ["user", "token"]
    assert keys(body[0][1]) == USER_KEYS
    user = response.json()["user"]
    assert UUID_RE.match(user["id"])
    assert user["email"] == email
    assert user["full_name"] == "Manager User"
    assert user["role"] == "MANAGER"
    assert TIMESTAMP.match(user["created_at"])
    assert user["last_login"] is None
    assert response.json()["token"].count(".") == 2


# --- errors ---------------------------------------------------------------------------


def test_an_unknown_lot_answers_exactly_the_legacy_not_found_body(client, operator):
    response = trace(client, operator, "NOPE")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.text == '{"detail":"Lot not found","error":"Lot not found"}'


@pytest.mark.parametrize(
    ("method", "path", "body", "role", "status"),
    [
        ("get", "/api/traceability/NOPE", None, Role.VIEWER, 404),
        ("get", "/api/traceability/RAW-1", None, None, 401),
        ("post", "/api/lots", {"lot_code": "X"}, Role.VIEWER, 403),
        ("post", "/api/login", {"email": "nobody@plant.example", "password": "x"}, None, 401),
    ],
    ids=["not-found", "unauthenticated", "forbidden", "bad-credentials"],
)
def test_every_refusal_answers_detail_then_error_with_one_message(
    client, auth, method, path, body, role, status
):
    headers = auth(role) if role else {}

    response = client.request(method, path, json=body, headers=headers)

    assert response.status_code == status
    assert_express_json(response)
    pairs = ordered(response.text)
    assert keys(pairs) == ["detail", "error"]
    assert pairs[0][1] == pairs[1][1]
    assert isinstance(pairs[0][1], str) and pairs[0][1]


def test_a_refused_registration_lists_each_problem_under_detail_and_summarises_in_error(
    client, operator
):
    response = client.post(
        "/api/lots", json={"lot_code": "", "weight_kg": -1}, headers=operator
    )

    assert response.status_code == 422
    assert_express_json(response)
    assert keys(ordered(response.text)) == ["detail", "error"]
    body = response.json()
    assert len(body["detail"]) == 2
    for problem in body["detail"]:
        assert list(problem)[:4] == ["type", "loc", "msg", "input"]
        assert problem["loc"][0] == "body"
    assert {tuple(p["loc"]) for p in body["detail"]} == {("body", "lot_code"),
                                                          ("body", "weight_kg")}
    assert isinstance(body["error"], str)
    assert "\n" not in body["error"]
    assert "lot_code" in body["error"]


# --- traceability ---------------------------------------------------------------------


def test_the_legacy_doner_genealogy_traces_exactly_as_the_legacy_server_did(
    client, app_container, auth
):
    example = json.loads((CONTRACT / "examples/traceability.json").read_text())
    assert load_demo(app_container.ledger) is True
    wait_until_projected(app_container)

    response = client.get(example["request"]["path"], headers=auth(Role.AUDITOR))

    assert response.status_code == example["status"]
    assert_express_json(response)
    body = ordered(response.text)
    assert keys(body) == ["central", "parents", "children"]
    got, expected = response.json(), example["response"]

    def comparable(row):
        assert_lot_row(row)
        return {k: v for k, v in row.items() if k != "created_at"}

    assert comparable(got["central"]) == comparable(expected["central"])
    assert [comparable(r) for r in got["parents"]] == [comparable(r) for r in expected["parents"]]
    assert [comparable(r) for r in got["children"]] == [
        comparable(r) for r in expected["children"]
    ]
    for group in (body[1][1], body[2][1]):
        for row in group:
            assert keys(row) == LOT_KEYS


def test_a_mix_lists_its_parents_in_the_order_the_recipe_named_them(
    client, register, operator
):
    for code in ("RAW-BEEF", "RAW-ONION", "RAW-SPICE"):
        register(lot_code=code, lot_type="RAW", weight_kg=100)
    recipe = ["RAW-SPICE", "RAW-BEEF", "RAW-ONION"]
    register(
        lot_code="MIX-1",
        lot_type="MIX",
        inputs=[{"lot_code": c, "quantity_used_kg": 10} for c in recipe],
    )

    body = trace(client, operator, "MIX-1").json()

    assert [p["lot_code"] for p in body["parents"]] == recipe
    assert body["children"] == []
    for row in body["parents"]:
        assert_lot_row(row)


def test_a_raw_lot_lists_the_lots_made_from_it_in_the_order_they_were_made(
    client, register, operator
):
    beef = register(lot_code="RAW-BEEF-2", lot_type="RAW", weight_kg=300).json()
    made = ["MIX-B", "MIX-A", "MIX-C"]
    for code in made:
        register(lot_code=code, inputs=[{"lot_code": "RAW-BEEF-2", "quantity_used_kg": 50}])
    register(lot_code="FG-1", inputs=[{"lot_code": "MIX-A", "quantity_used_kg": 1}])

    body = trace(client, operator, "RAW-BEEF-2").json()

    assert body["central"] == beef
    assert body["parents"] == []
    assert [c["lot_code"] for c in body["children"]] == made  # one level down only
    for row in body["children"]:
        assert_lot_row(row)


@pytest.mark.parametrize(
    "code",
    [
        "LOT/2024/001",
        "Bulk 12 B",
        "Épices – mélange n°3",
        "50% fat",
        "what?",
        "tray #4",
        "a/../b",
        "%2F",
        "+plus+",
        "&x=1;y",
        "x",
        "L" * 100,
    ],
)
def test_a_lot_code_as_the_plant_writes_it_is_traced_when_percent_encoded(
    client, register, operator, code
):
    created = register(lot_code=code, lot_type="BULK").json()

    response = trace_as_a_server_would(client, operator, code)

    assert response.status_code == 200, response.text
    assert response.json()["central"] == created
    assert response.json()["central"]["lot_code"] == code


def test_lot_codes_differing_only_in_case_are_different_lots(client, register, operator):
    lower = register(lot_code="mix-batch-9").json()
    upper = register(lot_code="MIX-BATCH-9").json()

    assert lower["id"] != upper["id"]
    assert trace(client, operator, "MIX-BATCH-9").json()["central"]["id"] == upper["id"]
    assert trace(client, operator, "mix-batch-9").json()["central"]["id"] == lower["id"]
    assert trace(client, operator, "Mix-Batch-9").status_code == 404


@pytest.mark.parametrize(
    "encoded",
    ["%00", "RAW%00-1", "%FF", "%ED%A0%80", "", "x" * 5000],
    ids=["nul", "nul-inside", "not-utf8", "lone-surrogate", "empty", "too-long"],
)
def test_a_code_no_lot_can_have_is_simply_not_found(client, operator, encoded):
    response = client.get(f"/api/traceability/{encoded}", headers=operator)

    assert response.status_code == 404
    assert response.text == '{"detail":"Lot not found","error":"Lot not found"}'
