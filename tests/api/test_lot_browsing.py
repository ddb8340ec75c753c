"""Browsing lots over HTTP: GET /api/lots (filters, pages) and GET /api/lots/{lot_code}.

Lots are registered through the ledger with the event clock set, so registration times
are known, then read back once the running projector has caught up.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote
from uuid import UUID

import pytest

from api.legacy_shapes import LOT_KEYS
from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.values import SYSTEM_ACTOR_ID, Role

T0 = datetime(2030, 3, 1, 6, 0, tzinfo=UTC)
NOT_FOUND = '{"detail":"Lot not found","error":"Lot not found"}'
LIST_KEYS = [*LOT_KEYS, "qc_status"]
DETAIL_KEYS = [*LIST_KEYS, "consumed_kg", "remaining_kg", "inputs", "outputs"]


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def plant(app_container):
    """Registers lots as the ledger would at a given time; `done()` waits for the projector."""
    ledger = app_container.ledger

    class Plant:
        def lot(self, code, at, lot_type="RAW", weight=None, *inputs, lot_id=None):
            new = NewLot(
                lot_code=code, lot_type=lot_type, lot_id=lot_id,
                weight_kg=None if weight is None else Decimal(weight),
                temperature_c=Decimal("4.0"),
                inputs=tuple(InputRef(Decimal(kg), lot_code=parent) for parent, kg in inputs),
            )
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("eventsourcing.domain.datetime_now_with_tzinfo", lambda: at)
                return ledger.register_lot(new, actor_id=SYSTEM_ACTOR_ID).aggregate

        def qc(self, lot, decision):
            notes = None if decision == "PASS" else "Probe read 9C at the receiving dock"
            ledger.record_qc_decision(
                NewQcDecision(lot_id=lot.id, decision=decision, notes=notes),
                actor_id=SYSTEM_ACTOR_ID,
            )

        def done(self):
            head = ledger.recorder.max_notification_id() or 0
            assert app_container.watermark.wait_for(head, 10), "projector did not catch up"

    return Plant()


@pytest.fixture
def viewer(auth):
    return auth(Role.VIEWER)


def browse(client, headers, **params):
    response = client.get("/api/lots", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def codes(body) -> list[str]:
    return [lot["lot_code"] for lot in body["lots"]]


# --- the list -------------------------------------------------------------------------


def test_the_list_shows_lot_rows_with_their_qc_status_newest_first(client, viewer, plant):
    raw = plant.lot("RAW-1", minutes(0), "RAW", "100.50")
    plant.lot("MIX-1", minutes(1), "MIX")
    plant.qc(raw, "HOLD")
    plant.done()

    response = client.get("/api/lots", headers=viewer)

    assert response.status_code == 200
    assert list(response.json()) == ["lots", "next_cursor"]
    mix, beef = response.json()["lots"]
    assert list(beef) == LIST_KEYS
    assert beef["lot_code"] == "RAW-1" and mix["lot_code"] == "MIX-1"
    assert beef["id"] == str(raw.id)
    assert (beef["weight_kg"], beef["temperature_c"]) == ("100.50", "4.0")
    assert beef["created_at"] == "2030-03-01T06:00:00.000Z"
    assert (beef["qc_status"], mix["qc_status"]) == ("HOLD", None)
    assert response.json()["next_cursor"] is None


def test_pages_of_three_walk_seven_lots_each_exactly_once(client, viewer, plant):
    """C, D and E were registered in the same microsecond: the id orders them."""
    for code, at, low in [("A", 0, None), ("B", 1, None), ("C", 2, 1), ("D", 2, 3), ("E", 2, 2),
                          ("F", 3, None), ("G", 4, None)]:
        plant.lot(code, minutes(at), lot_id=low and UUID(int=low))
    plant.done()

    pages, cursor = [], None
    for _ in range(5):
        body = browse(client, viewer, limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append(codes(body))
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == [["G", "F", "D"], ["E", "C", "B"], ["A"]]


def test_the_default_page_holds_fifty_lots(client, viewer, plant):
    for n in range(51):
        plant.lot(f"BULK-{n:02d}", minutes(n), "BULK")
    plant.done()

    first = browse(client, viewer)
    rest = browse(client, viewer, cursor=first["next_cursor"])

    assert len(first["lots"]) == 50 and first["lots"][0]["lot_code"] == "BULK-50"
    assert codes(rest) == ["BULK-00"] and rest["next_cursor"] is None


@pytest.fixture
def graded(plant):
    """RAW lots passed, held then released, failed; a held MIX; an FG without a decision."""
    plant.qc(plant.lot("RAW-1", minutes(0)), "PASS")
    raw2 = plant.lot("RAW-2", minutes(1))
    plant.qc(raw2, "HOLD")
    plant.qc(raw2, "PASS")
    plant.qc(plant.lot("RAW-3", minutes(2)), "FAIL")
    plant.qc(plant.lot("MIX-1", minutes(3), "MIX"), "HOLD")
    plant.lot("FG-1", minutes(4), "FG")
    plant.done()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"lot_type": "RAW"}, ["RAW-3", "RAW-2", "RAW-1"]),
        ({"lot_type": "FG"}, ["FG-1"]),
        ({"qc_status": "PASS"}, ["RAW-2", "RAW-1"]),
        ({"qc_status": "HOLD"}, ["MIX-1"]),
        ({"qc_status": "FAIL"}, ["RAW-3"]),
        ({"qc_status": "NONE"}, ["FG-1"]),
        ({"created_from": "2030-03-01T06:01:00Z", "created_to": "2030-03-01T06:03:00Z"},
         ["RAW-3", "RAW-2"]),
        ({"created_from": "2030-03-01T08:03:00+02:00"}, ["FG-1", "MIX-1"]),
        ({"created_to": "2030-03-01T06:00:00.001Z"}, ["RAW-1"]),
        ({"code_prefix": "RAW-"}, ["RAW-3", "RAW-2", "RAW-1"]),
        ({"code_prefix": ""}, ["FG-1", "MIX-1", "RAW-3", "RAW-2", "RAW-1"]),
        ({"lot_type": "RAW", "qc_status": "PASS", "code_prefix": "RAW-2"}, ["RAW-2"]),
    ],
    ids=repr,
)
def test_each_filter_keeps_only_its_lots(client, viewer, graded, params, expected):
    assert codes(browse(client, viewer, **params)) == expected


def test_a_filter_holds_across_pages(client, viewer, graded):
    first = browse(client, viewer, lot_type="RAW", limit=2)
    second = browse(client, viewer, lot_type="RAW", limit=2, cursor=first["next_cursor"])
    assert codes(first) == ["RAW-3", "RAW-2"]
    assert codes(second) == ["RAW-1"] and second["next_cursor"] is None


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("50%", ["50% fat"]), ("T_", ["T_1"]), ("A\\", ["A\\B"]), ("5", ["50% fat", "5000 fat"])],
)
def test_a_code_prefix_matches_wildcards_literally(client, viewer, plant, prefix, expected):
    for n, code in enumerate(["50% fat", "5000 fat", "T_1", "TX1", "A\\B", "AB"]):
        plant.lot(code, minutes(-n))
    plant.done()
    assert codes(browse(client, viewer, code_prefix=prefix)) == expected


# --- one lot --------------------------------------------------------------------------


def test_a_lot_used_by_two_mixes_shows_what_is_left_and_where_it_went(client, viewer, plant):
    # Ids run against both orders, so neither list can come out right sorted by id.
    raw1 = plant.lot("RAW-1", minutes(0), "RAW", "100", lot_id=UUID(int=1))
    raw2 = plant.lot("RAW-2", minutes(1), "RAW", "80.50", lot_id=UUID(int=2))
    mix_b = plant.lot("MIX-B", minutes(2), "MIX", "70", ("RAW-2", "30.25"), ("RAW-1", "40"),
                      lot_id=UUID(int=4))
    mix_a = plant.lot("MIX-A", minutes(3), "MIX", None, ("RAW-1", "20.5"), lot_id=UUID(int=3))
    plant.qc(raw1, "PASS")
    plant.done()

    response = client.get("/api/lots/RAW-1", headers=viewer)

    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == DETAIL_KEYS
    listed = browse(client, viewer, code_prefix="RAW-1")["lots"][0]
    assert {k: body[k] for k in LIST_KEYS} == listed
    assert body["qc_status"] == "PASS"
    assert (body["weight_kg"], body["consumed_kg"], body["remaining_kg"]) == (
        "100", "60.5", "39.5"
    )
    assert body["inputs"] == []
    assert body["outputs"] == [  # in the order made, not by code
        {"lot_id": str(mix_b.id), "lot_code": "MIX-B", "quantity_used_kg": "40",
         "linked_at": "2030-03-01T06:02:00.000Z"},
        {"lot_id": str(mix_a.id), "lot_code": "MIX-A", "quantity_used_kg": "20.5",
         "linked_at": "2030-03-01T06:03:00.000Z"},
    ]

    mix = client.get("/api/lots/MIX-B", headers=viewer).json()
    assert mix["inputs"] == [  # in the order the registration named them
        {"lot_id": str(raw2.id), "lot_code": "RAW-2", "quantity_used_kg": "30.25"},
        {"lot_id": str(raw1.id), "lot_code": "RAW-1", "quantity_used_kg": "40"},
    ]
    assert (mix["consumed_kg"], mix["remaining_kg"], mix["outputs"]) == ("0", "70", [])
    unweighed = client.get("/api/lots/MIX-A", headers=viewer).json()
    assert (unweighed["weight_kg"], unweighed["remaining_kg"]) == (None, None)


@pytest.mark.parametrize("code", ["LOT/2030/001", "50% fat", "a/../b", "Épices n°3", "x?y#z"])
def test_a_lot_code_with_any_printable_character_is_found(client, viewer, plant, code):
    lot = plant.lot(code, minutes(0))
    plant.done()

    response = client.get(f"/api/lots/{quote(code, safe='')}", headers=viewer)

    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["lot_code"]) == (str(lot.id), code)


@pytest.mark.parametrize("encoded", ["NOPE", "raw-1", "%00", "RAW%00-1", "%FF", "%ED%A0%80", ""])
def test_an_unknown_lot_is_not_found(client, viewer, plant, encoded):
    plant.lot("RAW-1", minutes(0))
    plant.done()

    response = client.get(f"/api/lots/{encoded}", headers=viewer)

    assert response.status_code == 404
    assert response.text == NOT_FOUND


def test_registering_a_lot_still_works_and_the_new_lot_can_be_browsed(client, auth, viewer):
    created = client.post("/api/lots", json={"lot_code": "NEW-1", "weight_kg": 5},
                          headers=auth(Role.OPERATOR))
    assert created.status_code == 201, created.text

    detail = client.get("/api/lots/NEW-1", headers=viewer).json()

    assert {k: detail[k] for k in LOT_KEYS} == created.json()
    assert (detail["remaining_kg"], detail["qc_status"]) == ("5", None)


# --- refusals -------------------------------------------------------------------------


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": _cursor("2030-03-01T06:00:00|00000000-0000-0000-0000-000000000001")},
         "cursor"),
        ({"cursor": _cursor("2030-03-01T06:00:00+00:00|not-a-uuid")}, "cursor"),
        ({"created_from": "2030-03-01"}, "created_from"),
        ({"created_from": "2030-03-01T06:00:00"}, "created_from"),
        ({"created_to": "2030-03-01 06:00:00Z"}, "created_to"),
        ({"created_to": "2030-02-30T06:00:00Z"}, "created_to"),
        ({"created_to": "1900000000"}, "created_to"),
        ({"lot_type": "PORK"}, "lot_type"),
        ({"qc_status": "pass"}, "qc_status"),
        ({"code_prefix": "RAW\x00"}, "code_prefix"),
        ({"code_prefix": "x" * 101}, "code_prefix"),
    ],
    ids=repr,
)
def test_a_bad_parameter_is_refused_with_detail_and_error(client, viewer, params, field):
    response = client.get("/api/lots", params=params, headers=viewer)

    assert response.status_code == 422, response.text
    body = response.json()
    assert list(body) == ["detail", "error"]
    assert [p["loc"] for p in body["detail"]] == [["query", field]]
    assert isinstance(body["error"], str) and body["error"].startswith(f"query.{field}:")


@pytest.mark.parametrize("path", ["/api/lots", "/api/lots/RAW-1"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}],
                         ids=["no-token", "bad-token"])
def test_browsing_needs_a_login(client, path, headers):
    response = client.get(path, headers=headers)

    assert response.status_code == 401
    body = response.json()
    assert list(body) == ["detail", "error"] and body["detail"] == body["error"]


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_browse(client, auth, plant, role):
    plant.lot("RAW-1", minutes(0))
    plant.done()

    assert codes(browse(client, auth(role))) == ["RAW-1"]
    assert client.get("/api/lots/RAW-1", headers=auth(role)).status_code == 200


def test_a_lot_coded_with_a_history_suffix_is_reachable_with_its_slash_encoded(
    client, auth, plant, viewer
):
    """`/api/lots/A/history` is A's history; the lot coded "A/history" is
    `/api/lots/A%2Fhistory`, for every role."""
    plant.lot("A", minutes(0))
    plant.lot("A/history", minutes(1))
    plant.done()

    detail = client.get("/api/lots/A%2Fhistory", headers=viewer)
    history = client.get("/api/lots/A/history", headers=auth(Role.AUDITOR))

    assert detail.status_code == 200, detail.text
    assert detail.json()["lot_code"] == "A/history"
    assert history.status_code == 200
    assert history.json()["lot_code"] == "A"
    assert client.get("/api/lots/A/history", headers=viewer).status_code == 403
