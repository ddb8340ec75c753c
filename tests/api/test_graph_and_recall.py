"""Deep genealogy, recall and source investigation over HTTP.

The plant (as in tests/integration/test_genealogy_queries.py): suspect RAW-A (100 kg) is
deboned into DEB-1 and DEB-2, mixed with RAW-B into MIX-1, which becomes FG-1 and FG-2.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest

from ledger.values import Role

LOT_KEYS = [
    "id", "lot_code", "lot_type", "production_run_id", "phase_id", "operator_id",
    "weight_kg", "temperature_c", "metadata", "created_at",
]
NOT_FOUND = '{"detail":"Lot not found","error":"Lot not found"}'
RUN = "6f1c1a52-98c1-4d55-9a65-5f3c0a0e8b11"


@pytest.fixture
def admin(auth):
    return auth(Role.ADMIN)


@pytest.fixture
def post_lot(client, admin):
    def post(code: str, lot_type: str | None, weight: float | None, *inputs, **extra) -> dict:
        body = {"lot_code": code, "lot_type": lot_type, "weight_kg": weight, **extra,
                "inputs": [{"lot_code": c, "quantity_used_kg": kg} for c, kg in inputs]}
        response = client.post("/api/lots", json=body, headers=admin)
        assert response.status_code == 201, response.text
        return response.json()

    return post


@pytest.fixture
def plant(post_lot) -> dict[str, dict]:
    return {
        lot["lot_code"]: lot
        for lot in (
            post_lot("RAW-A", "RAW", 100, metadata={"location": "Dock 3"}),
            post_lot("RAW-B", "RAW", 50),
            post_lot("DEB-1", "DEB", 60, ("RAW-A", 80)),
            post_lot("DEB-2", "DEB", 12, ("RAW-A", 15)),
            post_lot("MIX-1", "MIX", 90, ("DEB-1", 60), ("DEB-2", 9), ("RAW-B", 21),
                     production_run_id=RUN, metadata={"site": "Plant 2, line 4"}),
            post_lot("FG-1", "FG", 30, ("MIX-1", 30)),
            post_lot("FG-2", "FG", 45, ("MIX-1", 45)),
        )
    }


def graph(client, headers, code: str, **params):
    return client.get(f"/api/traceability/{quote(code, safe='')}/graph", params=params,
                      headers=headers)


def recall(client, headers, code: str, **params):
    return client.get(f"/api/recall/{quote(code, safe='')}", params=params, headers=headers)


def by_code(entries) -> dict[str, dict]:
    return {e["lot"]["lot_code"]: e for e in entries}


# --- graph ---------------------------------------------------------------------------------


def test_the_graph_renders_lot_rows_exactly_as_the_legacy_trace_does(client, admin, plant):
    response = graph(client, admin, "MIX-1")

    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["root", "nodes", "edges"]
    assert body["root"] == plant["MIX-1"]
    legacy = client.get("/api/traceability/MIX-1", headers=admin).json()
    assert body["root"] == legacy["central"]
    nodes = by_code(body["nodes"])
    assert nodes["MIX-1"] == {"lot": plant["MIX-1"], "direction": "root", "depth": 0,
                              "qc_status": None}
    for node in body["nodes"]:
        assert list(node) == ["lot", "direction", "depth", "qc_status"]
        assert list(node["lot"]) == LOT_KEYS
        assert node["lot"] == plant[node["lot"]["lot_code"]]
    assert {c: (n["direction"], n["depth"]) for c, n in nodes.items()} == {
        "MIX-1": ("root", 0), "DEB-1": ("upstream", 1), "DEB-2": ("upstream", 1),
        "RAW-B": ("upstream", 1), "RAW-A": ("upstream", 2),
        "FG-1": ("downstream", 1), "FG-2": ("downstream", 1),
    }
    ids = {lot["id"]: code for code, lot in plant.items()}
    edges = {(ids[e["parent_lot_id"]], ids[e["child_lot_id"]], e["quantity_used_kg"])
             for e in body["edges"]}
    assert edges == {
        ("RAW-A", "DEB-1", "80"), ("RAW-A", "DEB-2", "15"), ("DEB-1", "MIX-1", "60"),
        ("DEB-2", "MIX-1", "9"), ("RAW-B", "MIX-1", "21"), ("MIX-1", "FG-1", "30"),
        ("MIX-1", "FG-2", "45"),
    }
    assert all(list(e) == ["parent_lot_id", "child_lot_id", "quantity_used_kg"]
               for e in body["edges"])


def test_direction_and_max_depth_narrow_the_graph(client, admin, plant):
    down = graph(client, admin, "RAW-A", direction="downstream").json()
    up = graph(client, admin, "FG-2", direction="upstream", max_depth=1).json()

    assert set(by_code(down["nodes"])) == {"RAW-A", "DEB-1", "DEB-2", "MIX-1", "FG-1", "FG-2"}
    assert by_code(down["nodes"])["FG-1"]["depth"] == 3
    assert set(by_code(up["nodes"])) == {"FG-2", "MIX-1"}
    assert [e["quantity_used_kg"] for e in up["edges"]] == ["45"]


def test_as_of_shows_the_qc_status_and_the_lots_of_that_moment(client, admin, plant, post_lot):
    decide = {"lot_id": plant["MIX-1"]["id"], "decision": "HOLD", "notes": "Foreign body found"}
    held = client.post("/api/qc-decisions", json=decide, headers=admin).json()
    time.sleep(0.005)
    passed = client.post(
        "/api/qc-decisions", json={"lot_id": plant["MIX-1"]["id"], "decision": "PASS"},
        headers=admin,
    ).json()
    time.sleep(0.005)
    post_lot("FG-3", "FG", 5, ("MIX-1", 5))
    just_before_pass = datetime.fromisoformat(passed["decided_at"]) - timedelta(milliseconds=1)
    assert just_before_pass >= datetime.fromisoformat(held["decided_at"])

    now = graph(client, admin, "MIX-1", direction="downstream").json()
    then = graph(client, admin, "MIX-1", direction="downstream",
                 as_of=just_before_pass.isoformat()).json()

    assert by_code(now["nodes"])["MIX-1"]["qc_status"] == "PASS"
    assert set(by_code(now["nodes"])) == {"MIX-1", "FG-1", "FG-2", "FG-3"}
    assert by_code(then["nodes"])["MIX-1"]["qc_status"] == "HOLD"
    assert set(by_code(then["nodes"])) == {"MIX-1", "FG-1", "FG-2"}
    assert len(then["edges"]) == 2


def test_as_of_before_the_lot_existed_is_not_found(client, admin, plant):
    response = graph(client, admin, "FG-1", as_of="2001-01-01T00:00:00Z")

    assert response.status_code == 404
    assert response.json() == {"detail": "Lot did not exist at as_of",
                               "error": "Lot did not exist at as_of"}


def test_a_code_with_slashes_has_a_graph_and_the_legacy_trace_still_answers(
    client, admin, post_lot
):
    parent = post_lot("LOT/2024/001", "RAW", 10)
    tricky = post_lot("X/graph", "MIX", 1, ("LOT/2024/001", 1))

    body = graph(client, admin, "LOT/2024/001").json()
    assert body["root"] == parent
    assert [n["lot"]["lot_code"] for n in body["nodes"]] == ["LOT/2024/001", "X/graph"]
    # The legacy route for a code that ends in "/graph", slash encoded or not.
    for path in ("/api/traceability/X%2Fgraph", "/api/traceability/X/graph"):
        legacy = client.get(path, headers=admin)
        assert legacy.status_code == 200, path
        assert list(legacy.json()) == ["central", "parents", "children"]
        assert legacy.json()["central"] == tricky

    async def as_a_server_would():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/api/traceability/X%2Fgraph", headers=admin)

    assert asyncio.run(as_a_server_would()).json()["central"] == tricky
    assert graph(client, admin, "X/graph").json()["root"] == tricky


# --- recall --------------------------------------------------------------------------------


def test_recall_gives_each_affected_lot_its_kg_of_the_suspect_lot(client, auth, plant):
    response = recall(client, auth(Role.AUDITOR), "RAW-A")

    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["root", "direction", "affected_lots", "finished_goods", "summary"]
    assert body["root"] == plant["RAW-A"]
    assert {c: (e["depth"], e["suspect_kg"]) for c, e in by_code(body["affected_lots"]).items()} \
        == {"DEB-1": (1, "80.000"), "DEB-2": (1, "15.000"), "MIX-1": (2, "91.250"),
            "FG-1": (3, "30.417"), "FG-2": (3, "45.625")}
    assert [e["lot"] for e in body["finished_goods"]] == [plant["FG-1"], plant["FG-2"]]
    summary = dict(body["summary"])
    assert summary.pop("elapsed_ms") >= 0
    assert summary == {
        "affected_lots": 5,
        "finished_goods": 2,
        "suspect_root_weight_kg": "100.000",
        "root_consumed_kg": "95.000",
        "root_unconsumed_kg": "5.000",
        "kg_in_finished_goods": "76.042",
        "kg_in_intermediate_stock": "18.958",
        "share_accounted_for": "1.0000",
        "mass_balance_complete": True,
        "unknown_weight_lots": [],
        "depth_limit_reached": False,
    }


def test_recall_shows_each_lots_current_qc_status(client, admin, plant):
    client.post("/api/qc-decisions", headers=admin, json={
        "lot_id": plant["FG-2"]["id"], "decision": "FAIL", "notes": "Listeria swab positive"})

    body = recall(client, admin, "RAW-A").json()

    assert by_code(body["finished_goods"])["FG-2"]["qc_status"] == "FAIL"
    assert by_code(body["finished_goods"])["FG-1"]["qc_status"] is None


def test_upstream_recall_of_a_finished_good_goes_back_to_the_raw_lots(client, auth, plant):
    body = recall(client, auth(Role.MANAGER), "FG-1", direction="upstream").json()

    assert list(body) == ["root", "direction", "input_lots", "raw_lots", "summary"]
    assert {c: e["kg_in_root"] for c, e in by_code(body["input_lots"]).items()} == {
        "MIX-1": "30.000", "DEB-1": "20.000", "DEB-2": "3.000", "RAW-B": "7.000",
        "RAW-A": "30.417",
    }
    assert [e["lot"]["lot_code"] for e in body["raw_lots"]] == ["RAW-B", "RAW-A"]
    assert body["summary"]["kg_from_raw_lots"] == "37.417"
    assert body["summary"]["root_weight_kg"] == "30.000"


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MANAGER, Role.AUDITOR, Role.OPERATOR,
                                  Role.VIEWER])
def test_every_role_sees_the_graph_only_investigators_run_a_recall(client, auth, plant, role):
    may_recall = role in (Role.ADMIN, Role.MANAGER, Role.AUDITOR)

    assert graph(client, auth(role), "RAW-A").status_code == 200
    response = recall(client, auth(role), "RAW-A")
    assert response.status_code == (200 if may_recall else 403)
    csv_response = recall(client, auth(role), "RAW-A", format="csv")
    assert csv_response.status_code == (200 if may_recall else 403)
    if not may_recall:
        assert response.json() == {"detail": "Insufficient permissions",
                                   "error": "Insufficient permissions"}


def test_no_token_no_graph_and_no_recall(client, plant):
    assert graph(client, {}, "RAW-A").status_code == 401
    assert recall(client, {}, "RAW-A").status_code == 401


# --- CSV -----------------------------------------------------------------------------------


def test_the_recall_spreadsheet_has_a_row_per_lot_with_the_fsma_key_data(client, admin, plant):
    response = recall(client, admin, "RAW-A", format="csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="recall-RAW-A.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [
        "traceability_lot_code", "product_description", "lot_type", "quantity",
        "unit_of_measure", "input_lot_codes_and_quantities", "date_completed", "location",
        "reference_document_type", "reference_document_number", "depth", "qc_status",
        "suspect_kg",
    ]
    assert [r["traceability_lot_code"] for r in rows] == [
        "RAW-A", "DEB-1", "DEB-2", "MIX-1", "FG-1", "FG-2"]
    mix = rows[3]
    assert mix["input_lot_codes_and_quantities"] == "DEB-1:60 kg; DEB-2:9 kg; RAW-B:21 kg"
    assert (mix["quantity"], mix["unit_of_measure"], mix["suspect_kg"]) == ("90", "kg", "91.250")
    assert mix["location"] == "Plant 2, line 4"
    assert (mix["reference_document_type"], mix["reference_document_number"]) == (
        "production_run", RUN)
    assert mix["date_completed"] == plant["MIX-1"]["created_at"]
    assert mix["product_description"] == "mix" and mix["depth"] == "2"
    assert rows[0]["location"] == "Dock 3" and rows[0]["suspect_kg"] == "100.000"


def test_the_upstream_spreadsheet_lists_kg_in_the_finished_good(client, admin, plant):
    response = recall(client, admin, "FG-1", format="csv", direction="upstream")

    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["traceability_lot_code"]: r["kg_in_root"] for r in rows} == {
        "FG-1": "30.000", "MIX-1": "30.000", "DEB-1": "20.000", "DEB-2": "3.000",
        "RAW-B": "7.000", "RAW-A": "30.417",
    }
    assert "filename=\"recall-FG-1-upstream.csv\"" in response.headers["content-disposition"]


def test_cells_a_spreadsheet_would_run_as_formulas_are_kept_as_text(client, admin, post_lot):
    post_lot("=HYPERLINK(\"http://evil\")", "RAW", 10, metadata={"location": "@SUM(A1)"})
    post_lot("+MIX", "MIX", 5, ("=HYPERLINK(\"http://evil\")", 5),
             metadata={"product": "-2+3", "site": "ok"})

    response = recall(client, admin, "=HYPERLINK(\"http://evil\")", format="csv")

    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[0]["traceability_lot_code"] == "'=HYPERLINK(\"http://evil\")"
    assert rows[0]["location"] == "'@SUM(A1)"
    assert rows[1]["traceability_lot_code"] == "'+MIX"
    assert rows[1]["product_description"] == "'-2+3"
    assert rows[1]["input_lot_codes_and_quantities"] == "'=HYPERLINK(\"http://evil\"):5 kg"
    assert rows[1]["location"] == "ok"
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="recall-_HYPERLINK__http___evil__.csv"'


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/traceability/NOPE/graph", "/api/recall/NOPE", "/api/recall/NOPE?format=csv",
    "/api/traceability/NOPE/graph?direction=upstream", "/api/traceability/RAW%00-1/graph",
    "/api/recall/%ED%A0%80", "/api/traceability/%FF/graph?max_depth=2",
])
def test_an_unknown_lot_is_not_found(client, admin, path):
    response = client.get(path, headers=admin)

    assert response.status_code == 404
    assert response.text == NOT_FOUND


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("graph", {"as_of": "2024-01-01"}, "as_of"),
        ("graph", {"as_of": "2024-01-01T00:00:00"}, "as_of"),
        ("graph", {"as_of": "2024-02-30T00:00:00Z"}, "as_of"),
        ("graph", {"as_of": "yesterday"}, "as_of"),
        ("graph", {"as_of": "2024-01-01T00:00:00 01:00"}, "as_of"),
        ("graph", {"direction": "sideways"}, "direction"),
        ("graph", {"max_depth": "0"}, "max_depth"),
        ("graph", {"max_depth": "101"}, "max_depth"),
        ("graph", {"max_depth": "two"}, "max_depth"),
        ("recall", {"direction": "both"}, "direction"),
        ("recall", {"format": "xlsx"}, "format"),
    ],
)
def test_a_bad_query_parameter_is_unprocessable(client, admin, plant, path, params, field):
    url = "/api/traceability/RAW-A/graph" if path == "graph" else "/api/recall/RAW-A"

    response = client.get(url, params=params, headers=admin)

    assert response.status_code == 422, response.text
    body = response.json()
    assert list(body) == ["detail", "error"]
    assert body["detail"][0]["loc"] == ["query", field]
    assert body["error"].startswith(f"query.{field}:")


def test_an_offset_as_of_is_accepted(client, admin, plant):
    created = datetime.fromisoformat(plant["FG-1"]["created_at"])
    later = (created + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-5)))
    assert later.isoformat().endswith("-05:00")

    response = graph(client, admin, "FG-1", as_of=later.isoformat(), direction="upstream")
    too_early = graph(client, admin, "FG-1", as_of=(later - timedelta(seconds=2)).isoformat())

    assert response.status_code == 200, response.text
    assert len(response.json()["nodes"]) == 6
    assert too_early.status_code == 404
