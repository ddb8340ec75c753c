"""The whole write -> read path through HTTP: register a lot, then trace it."""

from ledger.values import Role


def test_an_operator_registers_raw_beef_and_traces_it(client, auth):
    created = client.post(
        "/api/lots",
        json={"lot_code": "RAW-1", "lot_type": "RAW", "weight_kg": 100.5, "temperature_c": 4},
        headers=auth(Role.OPERATOR),
    )
    assert created.status_code == 201, created.text
    assert created.json()["weight_kg"] == "100.5"

    traced = client.get("/api/traceability/RAW-1", headers=auth(Role.VIEWER))
    assert traced.status_code == 200
    assert traced.json()["central"] == created.json()
