"""Password guessing: after repeated failures, a client is told to wait, even with the
right password; with Redis, every API process counts the same failures."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger.values import SYSTEM_ACTOR_ID

PASSWORD = "deboning line 3"
EMAIL = "night.shift@plant.example"


@pytest.fixture(params=["redis", "memory"])
def backend(request, redis_url) -> dict:
    return {"redis_url": redis_url if request.param == "redis" else None}


@pytest.fixture
def make_client(make_container, backend):
    clients = []

    def make(**overrides) -> TestClient:
        container = make_container(
            run_projector=True, login_max_failures=3, login_lockout_seconds=60,
            **backend, **overrides,
        )
        if not container.ledger.find_user_by_email(EMAIL):
            container.ledger.register_user(
                email=EMAIL, full_name="Night Shift", role="OPERATOR",
                password_hash=container.passwords.hash(PASSWORD), actor_id=SYSTEM_ACTOR_ID,
            )
        client = TestClient(create_app(container=container))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def login(client: TestClient, password: str, email: str = EMAIL):
    return client.post("/api/login", json={"email": email, "password": password})


def test_three_wrong_passwords_lock_the_client_out_even_with_the_right_one(make_client):
    client = make_client()
    for _ in range(3):
        assert login(client, "guess").status_code == 401

    locked = login(client, PASSWORD)
    assert locked.status_code == 429
    assert locked.json() == {
        "detail": "Too many failed logins; try again later",
        "error": "Too many failed logins; try again later",
    }
    assert 1 <= int(locked.headers["Retry-After"]) <= 60


def test_a_success_before_the_limit_starts_the_count_again(make_client):
    client = make_client()
    for _ in range(2):
        assert login(client, "guess").status_code == 401
    assert login(client, PASSWORD).status_code == 200
    for _ in range(2):
        assert login(client, "guess").status_code == 401
    assert login(client, PASSWORD).status_code == 200


def test_a_locked_out_email_does_not_lock_out_colleagues(make_client):
    client = make_client()
    for _ in range(3):
        login(client, "guess")
    assert login(client, PASSWORD).status_code == 429
    assert login(client, "whatever", email="someone.else@plant.example").status_code == 401


def test_every_api_process_counts_the_same_failures_through_redis(make_container, redis_url):
    """Two API processes (two containers on one Redis): failures add up across them."""

    def app(**kw):
        container = make_container(
            run_projector=False, login_max_failures=3, login_lockout_seconds=60,
            redis_url=redis_url, **kw,
        )
        return container, TestClient(create_app(container=container))

    first, first_client = app()
    first.ledger.register_user(
        email=EMAIL, full_name="Night Shift", role="OPERATOR",
        password_hash=first.passwords.hash(PASSWORD), actor_id=SYSTEM_ACTOR_ID,
    )
    _, second_client = app()
    with first_client, second_client:
        assert login(first_client, "guess").status_code == 401
        assert login(second_client, "guess").status_code == 401
        assert login(first_client, "guess").status_code == 401
        assert login(second_client, PASSWORD).status_code == 429


def test_guesses_sent_in_parallel_are_counted_before_any_password_is_checked(make_client):
    """Twenty guesses at once: only three get as far as the password check."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    client = make_client()
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: login(client, "guess").status_code, range(20)))
    assert statuses.count(401) == 3
    assert statuses.count(429) == 17


def test_with_redis_down_a_login_is_a_503_not_a_crash(make_container):
    container = make_container(run_projector=False, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(container=container)) as client:
        response = login(client, PASSWORD)
    assert response.status_code == 503
    assert response.json() == {
        "detail": "Service temporarily unavailable",
        "error": "Service temporarily unavailable",
    }
