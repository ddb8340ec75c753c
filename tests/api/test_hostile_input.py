"""Bodies built to break a server: each gets a clear 4xx, and the plant keeps working."""

from __future__ import annotations

import pytest

from ledger.values import Role


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def operator(auth):
    return {**auth(Role.OPERATOR), "Content-Type": "application/json"}


@pytest.mark.parametrize("depth", [33, 300, 700, 990, 5000])
def test_metadata_nested_beyond_reason_is_refused_and_projection_goes_on(
    client, operator, depth
):
    """Deep metadata once reached the log and stopped the projector for good."""
    raw = '{"lot_code": "DEEP", "metadata": ' + nested(depth) + "}"
    refused = client.post("/api/lots", content=raw, headers=operator)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]

    after = client.post("/api/lots", json={"lot_code": "AFTER"}, headers=operator)
    assert after.status_code == 201
    assert client.get("/api/traceability/AFTER", headers=operator).status_code == 200


def test_metadata_nested_to_the_limit_is_kept_whole(client, operator):
    raw = '{"lot_code": "DEEP-OK", "metadata": ' + nested(31) + "}"
    created = client.post("/api/lots", content=raw, headers=operator)
    assert created.status_code == 201, created.text
    traced = client.get("/api/traceability/DEEP-OK", headers=operator)
    assert traced.json()["central"]["metadata"] == created.json()["metadata"]


@pytest.mark.parametrize("path", ["/api/lots", "/api/login"])
def test_a_number_with_thousands_of_digits_is_refused_not_crashed_on(client, operator, path):
    raw = '{"lot_code": "BIG", "email": "a@b.c", "weight_kg": 1' + "0" * 5000 + "}"
    response = client.post(path, content=raw, headers=operator)
    assert response.status_code == 422
    assert set(response.json()) == {"detail", "error"}


def test_a_body_declared_larger_than_a_megabyte_is_refused_before_it_is_read(client, operator):
    response = client.post(
        "/api/lots", content=b"{}", headers={**operator, "Content-Length": str(2**30)}
    )
    assert response.status_code == 413
    assert response.json() == {
        "detail": "Request body too large", "error": "Request body too large"
    }


def test_a_streamed_body_growing_past_a_megabyte_is_refused(client, operator):
    def chunks():
        yield b'{"lot_code": "X", "metadata": {"pad": "'
        for _ in range(40):
            yield b"x" * 32_768
        yield b'"}}'

    response = client.post("/api/lots", content=chunks(), headers=operator)
    assert response.status_code == 413
    assert client.get("/api/traceability/X", headers=operator).status_code == 404
