"""What the plant may send to POST /api/lots and /api/qc-decisions, and how refusals read.

Every refusal is a clean 4xx with `detail` and `error`, never a 500, never internals,
and never loses what was recorded before it.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from ledger.values import Role

LEAKS = ("Traceback", "psycopg", "SELECT", "INSERT", "eventsourcing", "File \"")


def assert_refused(response, status: int, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["detail", "error"]
    assert isinstance(body["error"], str) and body["error"]
    assert "\n" not in body["error"]
    if status == 422:
        assert isinstance(body["detail"], list) and body["detail"]
        for problem in body["detail"]:
            assert {"type", "loc", "msg", "input"} <= set(problem)
            assert problem["loc"][0] == "body"
    else:
        assert body["detail"] == body["error"]
    if message is not None:
        assert body["error"] == message
    for leak in LEAKS:
        assert leak not in response.text
    return body


@pytest.fixture
def operator(auth):
    return auth(Role.OPERATOR)


@pytest.fixture
def operator_id(operator, app_container) -> str:
    return str(app_container.ledger.find_user_by_email("operator@plant.example").id)


@pytest.fixture
def post_lot(client, operator):
    def post(body=None, *, raw: str | bytes | None = None):
        if raw is not None:
            headers = {**operator, "Content-Type": "application/json"}
            return client.post("/api/lots", content=raw, headers=headers)
        return client.post("/api/lots", json=body, headers=operator)

    return post


@pytest.fixture
def post_qc(client, operator):
    def post(body=None, *, raw: str | bytes | None = None):
        if raw is not None:
            headers = {**operator, "Content-Type": "application/json"}
            return client.post("/api/qc-decisions", content=raw, headers=headers)
        return client.post("/api/qc-decisions", json=body, headers=operator)

    return post


@pytest.fixture
def lot(post_lot):
    """Registers a lot and returns its row."""

    def register(code: str, **fields) -> dict:
        response = post_lot({"lot_code": code, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    return register


@pytest.fixture
def traced(client, operator):
    def get(code: str):
        return client.get(f"/api/traceability/{quote(code, safe='')}", headers=operator)

    return get


def blocking_note() -> str:
    return "Metal fragment found by detector"


# --- registering lots: what is accepted ------------------------------------------------


def test_a_lot_registered_with_only_a_code_gets_the_caller_as_operator_and_empty_metadata(
    post_lot, operator_id
):
    response = post_lot({"lot_code": "RAW-MIN-1"})

    assert response.status_code == 201
    body = response.json()
    assert body["operator_id"] == operator_id
    assert body["metadata"] == {}
    assert body["lot_type"] is None
    assert body["weight_kg"] is None and body["temperature_c"] is None


def test_a_lot_registered_on_behalf_of_another_operator_keeps_that_operator(post_lot):
    other = "2b1c0d9e-8f7a-4b6c-9d5e-4f3a2b1c0d9e"

    response = post_lot({"lot_code": "RAW-SHIFT-B", "operator_id": other, "metadata": None})

    assert response.status_code == 201
    assert response.json()["operator_id"] == other
    assert response.json()["metadata"] == {}


@pytest.mark.parametrize("lot_type", ["RAW", "DEB", "BULK", "MIX", "SKW", "FRZ", "FG", None])
def test_every_legacy_lot_type_is_accepted(post_lot, lot_type):
    response = post_lot({"lot_code": f"TYPE-{lot_type}", "lot_type": lot_type})

    assert response.status_code == 201, response.text
    assert response.json()["lot_type"] == lot_type


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("weight_kg", 0, "0"),
        ("weight_kg", 10000, "10000"),
        ("weight_kg", "12.5", "12.5"),
        ("temperature_c", -50, "-50"),
        ("temperature_c", 100, "100"),
        ("temperature_c", "-3.75", "-3.75"),
    ],
)
def test_weights_and_temperatures_at_the_plant_limits_are_accepted(post_lot, field, value, shown):
    response = post_lot({"lot_code": f"EDGE-{field}-{value}", field: value})

    assert response.status_code == 201, response.text
    assert response.json()[field] == shown


@pytest.mark.parametrize("length", [1, 100])
def test_lot_codes_of_one_to_a_hundred_characters_are_accepted(post_lot, length):
    response = post_lot({"lot_code": "Z" * length})

    assert response.status_code == 201
    assert response.json()["lot_code"] == "Z" * length


def test_a_mix_is_linked_to_its_parents_named_by_code_or_by_id(lot, traced):
    beef = lot("RAW-BEEF-10", lot_type="RAW", weight_kg=100)
    spice = lot("RAW-SPICE-10", lot_type="RAW", weight_kg=5)

    mix = lot(
        "MIX-10",
        lot_type="MIX",
        inputs=[
            {"lot_code": "RAW-BEEF-10", "quantity_used_kg": 90},
            {"lot_id": spice["id"], "quantity_used_kg": "2.5"},
        ],
    )

    assert list(mix) == list(beef)  # inputs never change the lot-row shape
    assert "inputs" not in mix
    body = traced("MIX-10").json()
    assert [p["id"] for p in body["parents"]] == [beef["id"], spice["id"]]
    assert [c["id"] for c in traced("RAW-SPICE-10").json()["children"]] == [mix["id"]]


# --- registering lots: what is refused --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "lot_code"),
        ({"lot_code": ""}, "lot_code"),
        ({"lot_code": "X" * 101}, "lot_code"),
        ({"lot_code": None}, "lot_code"),
        ({"lot_code": 42}, "lot_code"),
        ({"lot_code": "L", "lot_type": "PALLET"}, "lot_type"),
        ({"lot_code": "L", "lot_type": "raw"}, "lot_type"),
        ({"lot_code": "L", "weight_kg": -0.001}, "weight_kg"),
        ({"lot_code": "L", "weight_kg": 10000.001}, "weight_kg"),
        ({"lot_code": "L", "weight_kg": "heavy"}, "weight_kg"),
        ({"lot_code": "L", "weight_kg": "NaN"}, "weight_kg"),
        ({"lot_code": "L", "weight_kg": "Infinity"}, "weight_kg"),
        ({"lot_code": "L", "weight_kg": True}, "weight_kg"),
        ({"lot_code": "L", "weight_kg": False}, "weight_kg"),
        ({"lot_code": "L", "temperature_c": -50.1}, "temperature_c"),
        ({"lot_code": "L", "temperature_c": 100.01}, "temperature_c"),
        ({"lot_code": "L", "temperature_c": True}, "temperature_c"),
        ({"lot_code": "L", "production_run_id": "run-7"}, "production_run_id"),
        ({"lot_code": "L", "phase_id": 7}, "phase_id"),
        ({"lot_code": "L", "operator_id": "not-a-uuid"}, "operator_id"),
        ({"lot_code": "L", "metadata": ["a", "b"]}, "metadata"),
        ({"lot_code": "L", "metadata": "note"}, "metadata"),
        ({"lot_code": "L", "inputs": [{"lot_code": "P"}]}, "inputs"),
        ({"lot_code": "L", "inputs": [{"quantity_used_kg": 1}]}, "inputs"),
        ({"lot_code": "L", "inputs": [{"lot_code": "P", "quantity_used_kg": 0}]}, "inputs"),
        ({"lot_code": "L", "inputs": [{"lot_code": "P", "quantity_used_kg": -5}]}, "inputs"),
        ({"lot_code": "L", "inputs": [{"lot_code": "P", "quantity_used_kg": True}]}, "inputs"),
        ({"lot_code": "L", "inputs": [{"lot_code": "P", "quantity_used_kg": 1, "x": 1}]},
         "inputs"),
        ({"lot_code": "L", "inputs": {"lot_code": "P"}}, "inputs"),
        ({"lot_code": "L", "status": "RELEASED"}, "status"),
        ({"lot_code": "L", "id": "11111111-1111-1111-1111-111111111101"}, "id"),
        ({"lot_code": "L", "created_at": "2020-01-01T00:00:00.000Z"}, "created_at"),
        ({"lot_code": "L", "lot_code) VALUES ('x'); DROP TABLE lots; --": 1}, "lot_code)"),
    ],
    ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else v,
)
def test_a_lot_registration_breaking_a_field_rule_is_refused_naming_the_field(
    post_lot, traced, body, where
):
    refused = assert_refused(post_lot(body), 422)

    assert any(where in str(part) for p in refused["detail"] for part in p["loc"][1:]), refused
    assert where in refused["error"]
    assert traced("L").status_code == 404  # nothing was recorded


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        '{"lot_code": "L",}',
        "{'lot_code': 'L'}",
        "[]",
        '["lot_code"]',
        "null",
        '"L"',
        "42",
        "[" * 5000 + "]" * 5000,
        b'{"lot_code": "\xff\xfe"}',
    ],
    ids=["empty", "truncated", "trailing-comma", "single-quotes", "array", "array-of-str",
         "null", "string", "number", "deeply-nested", "not-utf8"],
)
def test_a_body_that_is_not_a_json_object_is_refused_not_crashed_on(post_lot, raw):
    assert_refused(post_lot(raw=raw), 422)


@pytest.mark.parametrize(
    "raw",
    [
        '{"lot_code": ["L", 1305324415261813167841874018304]}',
        '{"lot_code": "L", "phase_id": {"x": [6.995241992049252E+302, -11327339903136992877669]}}',
        '{"lot_code": "L", "production_run_id": "\\ud83d half"}',
    ],
    ids=["huge-int-echoed", "huge-numbers-echoed", "escaped-backslash-u"],
)
def test_a_refusal_echoing_numbers_json_cannot_hold_in_64_bits_is_still_a_422(post_lot, raw):
    """Found by fuzzing: the 422 body repeats the bad input, which must not turn into a 500."""
    assert_refused(post_lot(raw=raw), 422)


def test_a_registration_sent_with_no_body_at_all_is_refused(client, operator):
    assert_refused(client.post("/api/lots", headers=operator), 422)


@pytest.mark.parametrize(
    "raw",
    [
        r'{"lot_code": "RAW\u0000-1"}',
        r'{"lot_code": "RAW-\ud800"}',
        r'{"lot_code": "RAW-\udfff-lone-low"}',
        r'{"lot_code": "L", "metadata": {"note": "a\u0000b"}}',
        r'{"lot_code": "L", "metadata": {"a\u0000": 1}}',
        r'{"lot_code": "L", "metadata": {"\ud83d": "half an emoji"}}',
        r'{"lot_code": "L", "metadata": {"deep": [{"x": ["ok", "\ud800"]}]}}',
        r'{"lot_code": "L", "metadata": {"deep": {"\u0000": {"y": 1}}}}',
        r'{"lot_code": "L", "inputs": [{"lot_code": "P\u0000", "quantity_used_kg": 1}]}',
        '{"lot_code\\u0000": "L"}',
        b'{"lot_code": "RAW-\xed\xa0\x80"}',
        b'{"lot_code": "L", "metadata": {"k": "\xed\xbf\xbf"}}',
        r'{"lot_code": "RAW\u0000-1"}'.encode("utf-16"),
        r'{"lot_code": "RAW-\ud800"}'.encode("utf-32-le"),
    ],
    ids=["nul-code", "high-surrogate-code", "low-surrogate-code", "nul-meta-value",
         "nul-meta-key", "surrogate-meta-key", "surrogate-deep-value", "nul-deep-key",
         "nul-input-code", "nul-field-name", "surrogate-as-utf8-bytes",
         "low-surrogate-as-utf8-bytes-in-metadata", "nul-in-utf16", "surrogate-in-utf32"],
)
def test_text_postgresql_cannot_store_is_refused_wherever_it_hides(post_lot, traced, raw):
    assert_refused(post_lot(raw=raw), 422)
    assert traced("L").status_code == 404


def test_brackets_and_escapes_inside_text_are_only_text(post_lot):
    """Bodies with more brackets than the depth limit, or a backslash before a u, are
    screened in full and pass: the brackets are text, and so is the escaped backslash."""
    metadata = {"note": "[{" * 40, "path": "C:\\users\\ud800", "ok": [[[["fine"]]]]}
    response = post_lot({"lot_code": "RAW-BRACKETS", "metadata": metadata})

    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == metadata


def test_an_emoji_sent_as_a_surrogate_pair_is_fine_text(post_lot):
    response = post_lot(raw=r'{"lot_code": "FRZ-\ud83e\udd69", "metadata": {"\ud83e\udd69": "ok"}}')

    assert response.status_code == 201, response.text
    assert response.json()["lot_code"] == "FRZ-\U0001f969"
    assert response.json()["metadata"] == {"\U0001f969": "ok"}


def test_a_second_lot_with_the_same_code_is_refused_and_the_first_is_kept(lot, post_lot, traced):
    first = lot("RAW-DUP-1", weight_kg=10)

    response = post_lot({"lot_code": "RAW-DUP-1", "weight_kg": 20})

    assert_refused(response, 409, "Lot code already exists")
    assert response.text == '{"detail":"Lot code already exists","error":"Lot code already exists"}'
    assert traced("RAW-DUP-1").json()["central"] == first


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
def test_a_lot_on_hold_or_failed_cannot_go_into_a_mix(lot, post_lot, post_qc, traced, decision):
    suspect = lot("RAW-SUSPECT", weight_kg=100)
    recorded = post_qc({"lot_id": suspect["id"], "decision": decision, "notes": blocking_note()})
    assert recorded.status_code == 201, recorded.text

    response = post_lot(
        {"lot_code": "MIX-BLOCKED", "inputs": [{"lot_code": "RAW-SUSPECT", "quantity_used_kg": 1}]}
    )

    body = assert_refused(response, 409)
    assert "RAW-SUSPECT" in body["error"] and decision in body["error"]
    assert traced("MIX-BLOCKED").status_code == 404
    assert traced("RAW-SUSPECT").json()["children"] == []


def test_a_later_pass_supersedes_a_hold_and_releases_the_lot(lot, post_lot, post_qc):
    held = lot("RAW-HELD", weight_kg=100)
    for decision in ("HOLD", "PASS"):
        notes = blocking_note() if decision == "HOLD" else "Lab result negative"
        recorded = post_qc({"lot_id": held["id"], "decision": decision, "notes": notes})
        assert recorded.status_code == 201

    response = post_lot(
        {"lot_code": "MIX-RELEASED", "inputs": [{"lot_code": "RAW-HELD", "quantity_used_kg": 5}]}
    )

    assert response.status_code == 201, response.text


def test_a_mix_cannot_use_more_beef_than_is_left_in_the_lot(lot, post_lot, traced):
    lot("RAW-BEEF-100", weight_kg=100)
    lot("MIX-A1", inputs=[{"lot_code": "RAW-BEEF-100", "quantity_used_kg": 60}])

    too_much = post_lot(
        {"lot_code": "MIX-A2",
         "inputs": [{"lot_code": "RAW-BEEF-100", "quantity_used_kg": "40.001"}]}
    )

    body = assert_refused(too_much, 409)
    assert "RAW-BEEF-100" in body["error"]
    assert traced("MIX-A2").status_code == 404
    exactly_the_rest = post_lot(
        {"lot_code": "MIX-A3", "inputs": [{"lot_code": "RAW-BEEF-100", "quantity_used_kg": 40}]}
    )
    assert exactly_the_rest.status_code == 201, exactly_the_rest.text
    children = traced("RAW-BEEF-100").json()["children"]
    assert [c["lot_code"] for c in children] == ["MIX-A1", "MIX-A3"]


@pytest.mark.parametrize("by", ["lot_code", "lot_id"])
def test_a_lot_cannot_list_itself_as_one_of_its_inputs(lot, post_lot, traced, by):
    lot("RAW-OTHER", weight_kg=10)
    own = {"lot_code": "MIX-SELF"} if by == "lot_code" else {
        "lot_id": "11111111-1111-1111-1111-111111111101", "lot_code": "MIX-SELF"
    }

    response = post_lot(
        {
            "lot_code": "MIX-SELF",
            "inputs": [{"lot_code": "RAW-OTHER", "quantity_used_kg": 1},
                       {**own, "quantity_used_kg": 1}],
        }
    )

    refused = assert_refused(response, 422)
    assert refused["error"] == "body.inputs: A lot cannot consume itself"
    assert refused["detail"][0]["loc"] == ["body", "inputs"]
    assert traced("MIX-SELF").status_code == 404


@pytest.mark.parametrize("by", ["lot_code", "lot_id"])
def test_a_parent_listed_twice_in_one_recipe_is_refused(lot, post_lot, traced, by):
    parent = lot("RAW-TWICE", weight_kg=10)
    ref = {"lot_code": "RAW-TWICE"} if by == "lot_code" else {"lot_id": parent["id"]}

    response = post_lot(
        {"lot_code": "MIX-TWICE", "inputs": [{**ref, "quantity_used_kg": 1},
                                             {**ref, "quantity_used_kg": 2}]}
    )

    refused = assert_refused(response, 422)
    assert "listed more than once" in refused["error"]
    assert traced("MIX-TWICE").status_code == 404


@pytest.mark.parametrize(
    "ref",
    [{"lot_code": "RAW-GHOST"}, {"lot_id": "7e57a11e-0000-4000-8000-000000000000"}],
    ids=["by-code", "by-id"],
)
def test_a_mix_made_from_a_lot_nobody_registered_is_refused_as_not_found(post_lot, traced, ref):
    response = post_lot({"lot_code": "MIX-GHOST", "inputs": [{**ref, "quantity_used_kg": 1}]})

    body = assert_refused(response, 404)
    assert next(iter(ref.values())) in body["error"]
    assert traced("MIX-GHOST").status_code == 404


def test_a_qc_decision_id_is_not_a_lot_to_consume(lot, post_lot, post_qc):
    parent = lot("RAW-QC-AS-LOT", weight_kg=10)
    decision = post_qc({"lot_id": parent["id"], "decision": "PASS"}).json()

    response = post_lot(
        {"lot_code": "MIX-WRONG-ID", "inputs": [{"lot_id": decision["id"], "quantity_used_kg": 1}]}
    )

    assert_refused(response, 404)


def test_refused_requests_never_lose_what_the_shift_already_recorded(
    lot, post_lot, post_qc, traced
):
    beef = lot("RAW-KEEP-BEEF", lot_type="RAW", weight_kg=50)
    mix = lot("MIX-KEEP", lot_type="MIX",
              inputs=[{"lot_code": "RAW-KEEP-BEEF", "quantity_used_kg": 20}])

    refusals = [
        post_lot({"lot_code": "RAW-KEEP-BEEF"}),
        post_lot({"lot_code": "MIX-KEEP-2",
                  "inputs": [{"lot_code": "RAW-KEEP-BEEF", "quantity_used_kg": 31}]}),
        post_lot({"lot_code": "MIX-KEEP-3",
                  "inputs": [{"lot_code": "RAW-KEEP-BEEF", "quantity_used_kg": 1},
                             {"lot_code": "RAW-NOWHERE", "quantity_used_kg": 1}]}),
        post_lot(raw=r'{"lot_code": "MIX-KEEP-4", "metadata": {"k": "\u0000"}}'),
        post_lot(raw="{not json"),
        post_qc({"lot_id": mix["id"], "decision": "FAIL", "notes": "short"}),
    ]

    assert [r.status_code for r in refusals] == [409, 409, 404, 422, 422, 422]
    body = traced("RAW-KEEP-BEEF").json()
    assert body["central"] == beef
    assert [c["id"] for c in body["children"]] == [mix["id"]]
    assert traced("MIX-KEEP").json()["parents"] == [beef]
    for code in ("MIX-KEEP-2", "MIX-KEEP-3", "MIX-KEEP-4"):
        assert traced(code).status_code == 404
    # The partial recipe above consumed nothing: the 30 kg left are all still usable.
    rest = post_lot({"lot_code": "MIX-KEEP-5",
                     "inputs": [{"lot_code": "RAW-KEEP-BEEF", "quantity_used_kg": 30}]})
    assert rest.status_code == 201, rest.text


# --- QC decisions ---------------------------------------------------------------------


def test_a_pass_needs_no_notes_and_is_signed_by_the_caller(lot, post_qc, operator_id):
    beef = lot("RAW-QC-PASS")

    response = post_qc({"lot_id": beef["id"], "decision": "PASS", "temperature_c": "3.0"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["operator_id"] == operator_id
    assert body["notes"] is None
    assert body["temperature_c"] == "3.0"


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
@pytest.mark.parametrize("notes", [None, "", "too short"])
def test_a_hold_or_fail_without_a_real_reason_is_refused(lot, post_qc, decision, notes):
    beef = lot("RAW-QC-NOTES")
    body = {"lot_id": beef["id"], "decision": decision}
    if notes is not None:
        body["notes"] = notes

    refused = assert_refused(post_qc(body), 422)

    assert "notes" in refused["error"]


@pytest.mark.parametrize("decision", ["HOLD", "FAIL"])
def test_a_hold_or_fail_with_a_ten_character_reason_is_recorded(lot, post_qc, decision):
    beef = lot("RAW-QC-TEN")

    response = post_qc({"lot_id": beef["id"], "decision": decision, "notes": "Off colour"})

    assert response.status_code == 201, response.text
    assert response.json()["decision"] == decision
    assert response.json()["notes"] == "Off colour"


@pytest.mark.parametrize(("length", "status"), [(1000, 201), (1001, 422)])
def test_qc_notes_are_capped_at_a_thousand_characters(lot, post_qc, length, status):
    beef = lot("RAW-QC-LONG")

    response = post_qc({"lot_id": beef["id"], "decision": "FAIL", "notes": "n" * length})

    assert response.status_code == status, response.text
    if status == 422:
        assert_refused(response, 422)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"lot_id": None}, "lot_id"),
        ({"lot_id": "lot-7"}, "lot_id"),
        ({"decision": None}, "decision"),
        ({"decision": "pass"}, "decision"),
        ({"decision": "RELEASED"}, "decision"),
        ({"temperature_c": -50.5}, "temperature_c"),
        ({"temperature_c": 101}, "temperature_c"),
        ({"temperature_c": True}, "temperature_c"),
        ({"temperature_c": "warm"}, "temperature_c"),
        ({"qc_gate_id": "gate-3"}, "qc_gate_id"),
        ({"operator_id": 5}, "operator_id"),
        ({"notes": 12345678901}, "notes"),
        ({"digital_signature": {"alg": "x"}}, "digital_signature"),
        ({"approved": True}, "approved"),
        ({"decided_at": "2020-01-01T00:00:00.000Z"}, "decided_at"),
    ],
    ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else v,
)
def test_a_qc_decision_breaking_a_field_rule_is_refused(lot, post_qc, traced, change, where):
    beef = lot("RAW-QC-RULES")
    body = {"lot_id": beef["id"], "decision": "PASS", **change}
    body = {k: v for k, v in body.items() if v is not None}

    refused = assert_refused(post_qc(body), 422)

    assert where in refused["error"]


def test_a_qc_decision_about_no_lot_at_all_is_refused(post_qc):
    refused = assert_refused(post_qc({"decision": "PASS", "notes": "ok"}), 422)

    assert refused["detail"][0]["loc"] == ["body", "lot_id"]
    assert refused["detail"][0]["type"] == "missing"


def test_a_qc_decision_about_an_unknown_lot_is_not_found(post_qc):
    response = post_qc({"lot_id": "0badc0de-0000-4000-8000-000000000000", "decision": "PASS"})

    assert_refused(response, 404, "Lot not found")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "{",
        "[]",
        (
            r'{"lot_id": "0badc0de-0000-4000-8000-000000000000", "decision": "FAIL",'
            r' "notes": "Foreign body \u0000 found"}'
        ),
        (
            r'{"lot_id": "0badc0de-0000-4000-8000-000000000000", "decision": "PASS",'
            r' "digital_signature": "\udc00"}'
        ),
    ],
    ids=["empty", "truncated", "array", "nul-notes", "surrogate-signature"],
)
def test_a_qc_body_that_cannot_be_read_is_refused_not_crashed_on(post_qc, raw):
    assert_refused(post_qc(raw=raw), 422)
