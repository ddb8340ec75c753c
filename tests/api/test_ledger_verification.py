"""Auditors take a digest of the ledger over HTTP and later verify the log against it."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from api.routes import audit
from ledger.values import Role


@pytest.fixture
def recorded(client, auth) -> None:
    writer = auth(Role.OPERATOR)
    assert client.post("/api/lots", json={"lot_code": "RAW-PORK-3", "weight_kg": "80.00"},
                       headers=writer).status_code == 201
    assert client.post("/api/lots", json={
        "lot_code": "DEB-PORK-3", "inputs": [{"lot_code": "RAW-PORK-3", "quantity_used_kg": 50}],
    }, headers=writer).status_code == 201


def test_an_auditor_keeps_a_digest_and_the_log_verifies_against_it(client, auth, recorded):
    headers = auth(Role.AUDITOR)

    digest = client.get("/api/ledger/digest", headers=headers)
    verified = client.get("/api/ledger/verify", params={"digest": digest.json()["digest"]},
                          headers=headers)

    assert digest.status_code == 200
    assert list(digest.json()) == ["digest", "position"]
    assert digest.json()["digest"].startswith("flowviz-digest:v1:")
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert list(body) == ["intact", "events", "streams", "digest_checked", "findings"]
    assert body["intact"] is True and body["findings"] == []
    assert body["digest_checked"] == digest.json()["digest"]
    assert body["events"] >= 8  # users, their logins, two lots, two claims, one consumption


def test_a_rewritten_consumption_is_named_by_its_position(client, auth, recorded, app_container):
    headers = auth(Role.AUDITOR)
    schema, table = app_container.settings.database_schema, app_container.events_table
    with psycopg.connect(app_container.settings.database_url, autocommit=True) as conn:
        name = SQL("{}.{}").format(Identifier(schema), Identifier(table))
        position = conn.execute(
            SQL("SELECT notification_id FROM {} WHERE topic LIKE '%%Lot.Consumed'").format(name)
        ).fetchone()[0]
        with conn.transaction():
            conn.execute(SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(name))
            changed = conn.execute(
                SQL("UPDATE {} SET state = convert_to(replace(convert_from(state, 'UTF8'),"
                    " '\"50\"', '\"5\"'), 'UTF8') WHERE notification_id = %s RETURNING state"
                    ).format(name), (position,)).fetchone()[0]
            conn.execute(SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(name))
    assert b'"_data_":"5"' in bytes(changed)  # the 50 kg now reads 5 kg

    body = client.get("/api/ledger/verify", headers=headers).json()

    assert body["intact"] is False
    assert body["findings"][0]["position"] == position
    assert "altered" in body["findings"][0]["what"]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MANAGER, Role.AUDITOR])
def test_those_who_answer_for_the_plant_may_verify(client, auth, role):
    assert client.get("/api/ledger/verify", headers=auth(role)).status_code == 200
    assert client.get("/api/ledger/digest", headers=auth(role)).status_code == 200


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_the_shop_floor_may_not(client, auth, role):
    for path in ("/api/ledger/verify", "/api/ledger/digest"):
        response = client.get(path, headers=auth(role))
        assert response.status_code == 403
        assert response.json()["error"] and response.json()["detail"]


def test_a_garbled_digest_is_refused_with_a_clear_message(client, auth):
    response = client.get("/api/ledger/verify", params={"digest": "flowviz-digest:v1:12:zz"},
                          headers=auth(Role.AUDITOR))
    assert response.status_code == 422
    assert "not a ledger digest" in response.json()["detail"]
    assert response.json()["error"]


def test_a_second_verification_while_one_runs_is_asked_to_wait(client, auth):
    headers = auth(Role.AUDITOR)
    with audit._verifying:
        busy = client.get("/api/ledger/verify", headers=headers)
    after = client.get("/api/ledger/verify", headers=headers)

    assert busy.status_code == 429
    assert busy.json()["detail"] and busy.json()["error"]
    assert after.status_code == 200
