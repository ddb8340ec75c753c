"""GET /api/lots/{lot_code}/history: a lot's events as recorded, hash-chained, replayable.

The plant registers a beef lot over HTTP at known times (the event clock is set), QC
passes it and two debone lots consume it; the auditor then reads its history, checks the
chain and replays it by hand.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import pytest

from api.history_shapes import HISTORY_EVENT_KEYS
from ledger.commands import NewLot
from ledger.values import SYSTEM_ACTOR_ID, Role

T0 = datetime(2030, 3, 2, 6, 0, 0, 123456, tzinfo=UTC)
RAW = "RAW-BEEF-0302"
EVENT_KEYS = ["version", "type", "recorded_at", "actor_id", "data", "hash", "prev_hash"]
RECORDED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def clock():
    """The ledger's event clock, set by the test: `clock.now = ...` before each request."""

    class Clock:
        now = T0

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("eventsourcing.domain.datetime_now_with_tzinfo", lambda: Clock.now)
        yield Clock


def post_json(client, path: str, text: str, headers: dict[str, str]):
    """Posts the JSON text as typed, so decimals like 12.50 keep their scale."""
    response = client.post(
        path, content=text, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def beef(client, auth, clock):
    """06:00 beef received (250.00 kg), 06:10 QC PASS, 06:20 and 06:30 two debone lots
    take 12.50 kg and 40.25 kg of it; all by the operator on shift."""
    operator = auth(Role.OPERATOR)
    clock.now = minutes(0)
    raw = post_json(client, "/api/lots",
                    f'{{"lot_code": "{RAW}", "lot_type": "RAW", "weight_kg": 250.00,'
                    ' "temperature_c": 2.5}', operator)
    clock.now = minutes(10)
    post_json(client, "/api/qc-decisions",
              f'{{"lot_id": "{raw["id"]}", "decision": "PASS", "notes": "Core 2.1C"}}',
              operator)
    for n, (code, kg) in enumerate((("DEB-0302-A", "12.50"), ("DEB-0302-B", "40.25"))):
        clock.now = minutes(20 + 10 * n)
        post_json(client, "/api/lots",
                  f'{{"lot_code": "{code}", "lot_type": "DEB",'
                  f' "inputs": [{{"lot_code": "{RAW}", "quantity_used_kg": {kg}}}]}}',
                  operator)
    return raw


@pytest.fixture
def auditor(auth):
    return auth(Role.AUDITOR)


def history(client, headers, code: str = RAW, **params):
    response = client.get(f"/api/lots/{code}/history", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_auditor_reads_the_beef_lots_chained_history(client, app_container, beef, auditor):
    """Every event in order, as recorded: its type, time, who did it, what it says, and the
    hash chaining it to the one before."""
    body = history(client, auditor)
    operator_id = str(app_container.ledger.find_user_by_email("operator@plant.example").id)

    assert list(body) == ["lot_code", "events"]
    assert body["lot_code"] == RAW
    events = body["events"]
    assert [list(e) for e in events] == [EVENT_KEYS] * 4
    assert list(HISTORY_EVENT_KEYS) == EVENT_KEYS
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == [
        "Lot.Registered", "Lot.QcDecisionRecorded", "Lot.Consumed", "Lot.Consumed",
    ]
    assert [e["recorded_at"] for e in events] == [
        "2030-03-02T06:00:00.123Z", "2030-03-02T06:10:00.123Z",
        "2030-03-02T06:20:00.123Z", "2030-03-02T06:30:00.123Z",
    ]
    assert all(RECORDED_AT.match(e["recorded_at"]) for e in events)
    assert [e["actor_id"] for e in events] == [operator_id] * 4

    assert events[0]["prev_hash"] is None
    assert all(HEX64.match(e["hash"]) for e in events)
    for earlier, later in zip(events, events[1:], strict=False):
        assert later["prev_hash"] == earlier["hash"]
    assert len({e["hash"] for e in events}) == 4

    registered, qc, first, second = (e["data"] for e in events)
    assert registered["lot_code"] == RAW and registered["lot_type"] == "RAW"
    assert (registered["weight_kg"], registered["temperature_c"]) == ("250.00", "2.5")
    assert registered["inputs"] == [] and registered["actor_id"] == operator_id
    assert (qc["decision"], qc["notes"]) == ("PASS", "Core 2.1C")
    assert (first["quantity_kg"], second["quantity_kg"]) == ("12.50", "40.25")
    deb_a = app_container.ledger.find_lot_by_code("DEB-0302-A")
    assert first["child_lot_id"] == str(deb_a.id)


def test_the_hashes_shown_are_the_ones_the_ledger_verifies(client, app_container, beef, auditor):
    """The API shows the stored chain, not something recomputed for display: the ledger's
    own history carries the same hashes, and the log verifies intact."""
    events = history(client, auditor)["events"]
    entries = app_container.ledger.lot_history(RAW).entries
    assert [e["hash"] for e in events] == [entry.hash.hex() for entry in entries]
    assert app_container.ledger.verify().intact


def test_replaying_the_json_gives_the_lots_state(client, app_container, beef, auditor):
    """An auditor with nothing but the JSON adds up the consumptions and takes the last QC
    decision: the same as the ledger's current state of the lot."""
    events = history(client, auditor)["events"]
    consumed = sum(
        (Decimal(e["data"]["quantity_kg"]) for e in events if e["type"] == "Lot.Consumed"),
        Decimal(0),
    )
    decisions = [e["data"]["decision"] for e in events if e["type"] == "Lot.QcDecisionRecorded"]

    lot = app_container.ledger.find_lot_by_code(RAW)
    assert consumed == lot.consumed_kg == Decimal("52.75")
    assert decisions[-1] == lot.qc_status == "PASS"
    assert Decimal(events[0]["data"]["weight_kg"]) - consumed == lot.remaining_kg


@pytest.mark.parametrize(
    ("as_of", "versions"),
    [
        ("2030-03-02T06:15:00Z", [1, 2]),
        ("2030-03-02T07:15:00+01:00", [1, 2]),  # the same instant, in Vienna
        ("2030-03-02T06:20:00.123456Z", [1, 2, 3]),  # at the event itself: included
        ("2030-03-02T06:20:00.123455Z", [1, 2]),
        ("2030-03-02T09:00:00Z", [1, 2, 3, 4]),
        ("2030-03-02T05:59:59Z", []),  # before the beef arrived
    ],
)
def test_as_of_shows_only_what_was_recorded_by_then(client, beef, auditor, as_of, versions):
    body = history(client, auditor, as_of=as_of)
    assert body["lot_code"] == RAW
    assert [e["version"] for e in body["events"]] == versions


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.ADMIN, 200), (Role.MANAGER, 200), (Role.AUDITOR, 200),
     (Role.OPERATOR, 403), (Role.VIEWER, 403)],
)
def test_history_is_for_those_who_answer_for_the_plant(client, beef, auth, role, status):
    """Admins, managers and auditors read it; the shop floor does not."""
    response = client.get(f"/api/lots/{RAW}/history", headers=auth(role))
    assert response.status_code == status, response.text
    if status == 200:
        assert len(response.json()["events"]) == 4
    else:
        assert set(response.json()) == {"detail", "error"}
        assert "events" not in response.text


def test_history_without_a_token_is_unauthorized(client, beef):
    response = client.get(f"/api/lots/{RAW}/history")
    assert response.status_code == 401
    assert set(response.json()) == {"detail", "error"}


def test_an_unknown_lot_is_not_found(client, auditor):
    response = client.get("/api/lots/RAW-NEVER-RECEIVED/history", headers=auditor)
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"detail", "error"}
    assert body["detail"] == body["error"] == "Lot not found"


@pytest.mark.parametrize(
    "as_of", ["2030-03-02T06:15:00", "yesterday", "2030-13-01T00:00:00Z", ""],
    ids=["naive", "garbage", "no-such-month", "empty"],
)
def test_an_as_of_that_is_not_an_instant_is_refused(client, beef, auditor, as_of):
    response = client.get(f"/api/lots/{RAW}/history", params={"as_of": as_of}, headers=auditor)
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"detail", "error"}
    assert "as_of" in response.text


def test_a_lot_code_with_slashes_has_a_history(client, app_container, clock, auditor):
    """Lot codes like RAW/2030/03 are common on supplier labels."""
    code = "RAW/2030/03-B"
    app_container.ledger.register_lot(
        NewLot(code, "RAW", weight_kg=Decimal("10.0")), actor_id=SYSTEM_ACTOR_ID
    )

    for path in (code, quote(code, safe="")):
        body = history(client, auditor, path)
        assert body["lot_code"] == code
        assert [e["type"] for e in body["events"]] == ["Lot.Registered"]
        assert body["events"][0]["data"]["lot_code"] == code
        assert body["events"][0]["actor_id"] == str(SYSTEM_ACTOR_ID)
