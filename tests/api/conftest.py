"""An app on the test's schema with its projector running, and logged-in clients per role."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api.composition import Container
from api.main import create_app
from ledger.values import SYSTEM_ACTOR_ID, Role

PASSWORD = "correct horse battery"


@pytest.fixture
def app_container(make_container) -> Container:
    return make_container(run_projector=True)


@pytest.fixture
def client(app_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container=app_container)) as test_client:
        yield test_client


@pytest.fixture
def add_user(app_container: Container) -> Callable[..., str]:
    """Registers a user through the ledger; returns the e-mail."""

    def add(role: Role | str, email: str | None = None, password: str | None = PASSWORD) -> str:
        role = Role(role)
        email = email or f"{role.value.lower()}@plant.example"
        app_container.ledger.register_user(
            email=email,
            full_name=f"{role.value.title()} User",
            role=role.value,
            password_hash=app_container.passwords.hash(password) if password else None,
            actor_id=SYSTEM_ACTOR_ID,
        )
        return email

    return add


@pytest.fixture
def token_for(client: TestClient, add_user) -> Callable[[Role | str], str]:
    tokens: dict[str, str] = {}

    def token(role: Role | str) -> str:
        role = Role(role)
        if role.value not in tokens:
            email = add_user(role)
            response = client.post("/api/login", json={"email": email, "password": PASSWORD})
            assert response.status_code == 200, response.text
            tokens[role.value] = response.json()["token"]
        return tokens[role.value]

    return token


@pytest.fixture
def auth(token_for) -> Callable[[Role | str], dict[str, str]]:
    def headers(role: Role | str = Role.OPERATOR) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(role)}"}

    return headers
