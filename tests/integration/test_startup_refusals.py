"""A production plant server refuses to start with a guessable secret or e-mail-only login."""

from __future__ import annotations

import subprocess
import time

import pytest

from api.composition import Container
from api.main import create_app
from api.settings import ConfigurationError, Settings
from tests.integration.cli_process import CLI, cli_env

STRONG_SECRET = "prod-" + "Qm7vX2pL9rT4wK8sN3bZ6yH1" * 2

REFUSED = {
    "no-secret": ({"secret_key": None}, "SECRET_KEY is not set"),
    "changeme": ({"secret_key": "changeme"}, "SECRET_KEY is a default or placeholder value"),
    "secret": ({"secret_key": "secret"}, "SECRET_KEY is a default or placeholder value"),
    "padded-placeholder": ({"secret_key": " ChangeMe "}, "placeholder"),
    "one-character-repeated": ({"secret_key": "a" * 64}, "placeholder"),
    "too-short": ({"secret_key": "Kp2mQ9vR4sT8wZ1"}, "shorter than 32 characters"),
    "passwordless-login": (
        {"secret_key": STRONG_SECRET, "flowviz_passwordless_login": True},
        "FLOWVIZ_PASSWORDLESS_LOGIN must be off in production",
    ),
}


@pytest.fixture
def production(settings: Settings):
    def make(**overrides: object) -> Settings:
        # Validated as if read from the environment, so secrets become SecretStr.
        return Settings(**{**settings.model_dump(), "environment": "production", **overrides})

    return make


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_container_refuses_a_production_start(production, case):
    """The composition root will not wire a production server with this configuration."""
    overrides, reason = REFUSED[case]
    with pytest.raises(ConfigurationError, match="refusing to start in production") as refused:
        Container(production(**overrides))
    assert reason in str(refused.value)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_app_factory_refuses_a_production_start(production, case):
    """The uvicorn factory fails the same way before serving anything."""
    overrides, reason = REFUSED[case]
    with pytest.raises(ConfigurationError) as refused:
        create_app(settings=production(**overrides))
    assert reason in str(refused.value)


def test_the_refusal_names_every_problem_at_once(production):
    """An operator fixing the config sees all problems in one go, not one per restart."""
    with pytest.raises(ConfigurationError) as refused:
        Container(production(secret_key="changeme", flowviz_passwordless_login=True))
    assert "SECRET_KEY" in str(refused.value)
    assert "FLOWVIZ_PASSWORDLESS_LOGIN" in str(refused.value)


def test_a_strong_secret_starts_in_production(production):
    """With a long random secret and password login, production starts and serves."""
    from fastapi.testclient import TestClient  # noqa: PLC0415

    app = create_app(settings=production(secret_key=STRONG_SECRET))
    with TestClient(app) as client:
        assert client.get("/api/health").json()["status"] == "ok"
    assert app.state.container.settings.environment == "production"


def _cli_env(database_url: str, schema: str, **extra: str) -> dict[str, str]:
    return cli_env(DATABASE_URL=database_url, DATABASE_SCHEMA=schema, **extra)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"SECRET_KEY": "changeme"}, "SECRET_KEY"),
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": STRONG_SECRET, "FLOWVIZ_PASSWORDLESS_LOGIN": "true"},
         "FLOWVIZ_PASSWORDLESS_LOGIN"),
    ],
    ids=["placeholder-secret", "no-secret", "passwordless-login"],
)
def test_flowviz_serve_exits_at_once_with_a_plain_message(database_url, schema, extra, named):
    """`flowviz serve` in production with a bad config exits non-zero within seconds,
    naming the problem, without a Python traceback and without binding a port."""
    started = time.monotonic()
    result = subprocess.run(
        [*CLI, "serve", "--port", "1"],
        env=_cli_env(database_url, schema, ENVIRONMENT="production", **extra),
        capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert time.monotonic() - started < 30
    assert named in output
    assert "Traceback" not in output


def test_flowviz_serve_demo_is_refused_in_production(database_url, schema):
    """`--demo` turns on e-mail-only login, which production must not allow."""
    result = subprocess.run(
        [*CLI, "serve", "--demo", "--port", "1"],
        env=_cli_env(database_url, schema, ENVIRONMENT="production", SECRET_KEY=STRONG_SECRET),
        capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "FLOWVIZ_PASSWORDLESS_LOGIN" in output
    assert "Traceback" not in output


def test_flowviz_serve_without_a_reachable_database_says_so_plainly(schema):
    """A wrong DATABASE_URL (nothing listens there) stops `serve` at once with a message
    naming PostgreSQL, not a traceback."""
    result = subprocess.run(
        [*CLI, "serve", "--port", "1"],
        env=_cli_env("postgresql://postgres@127.0.0.1:1/flowviz", schema,
                     SECRET_KEY=STRONG_SECRET),
        capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "cannot reach PostgreSQL" in output
    assert "Traceback" not in output


def test_flowviz_serve_with_settings_it_cannot_use_names_each_one_plainly(database_url, schema):
    """Values the settings refuse (a schema name that cannot go into search_path, a pool
    too small to serve) stop `serve` with a line per variable, not pydantic's traceback."""
    env = _cli_env(database_url, schema, SECRET_KEY=STRONG_SECRET)
    result = subprocess.run(
        [*CLI, "serve", "--port", "1"],
        env={**env, "DATABASE_SCHEMA": "Bad-Schema", "DB_POOL_SIZE": "1"},
        capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "DATABASE_SCHEMA:" in output
    assert "DB_POOL_SIZE:" in output
    assert "Traceback" not in output
