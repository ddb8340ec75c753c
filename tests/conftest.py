"""Shared fixtures: a real PostgreSQL for every test, each test in a schema of its own.

Where the database comes from, in order: TEST_DATABASE_URL; a testcontainers
PostgreSQL when a Docker engine answers; else the embedded PostgreSQL that
`flowviz serve` uses, so `uv run pytest` works on a fresh machine.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.composition import Container
from api.settings import Settings

TEST_SECRET = "test-secret-" + "x7Kp2mQ9vR4sT8wZ" * 3


def _docker_answers() -> bool:
    try:
        import docker  # noqa: PLC0415

        docker.from_env(timeout=2).ping()
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False
    return True


def _ensure_database(url: str) -> None:
    params = conninfo_to_dict(url)
    name = params.get("dbname") or "postgres"
    admin = make_conninfo(**{**params, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        _ensure_database(url)
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    from api.embedded_db import EmbeddedPostgres  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="flowviz-test-pg-") as tmp:
        embedded = EmbeddedPostgres(Path(tmp))
        try:
            yield embedded.start()
        finally:
            embedded.stop()


def _redis_answers(url: str) -> bool:
    import redis  # noqa: PLC0415

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """TEST_REDIS_URL; else testcontainers; else a Redis on the default local port."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.redis import RedisContainer  # noqa: PLC0415

        with RedisContainer("redis:7-alpine") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    local = "redis://127.0.0.1:6379/0"
    if not _redis_answers(local):
        pytest.fail("no Redis: set TEST_REDIS_URL, start Docker, or run redis-server locally")
    yield local


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def settings(database_url: str, schema: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        database_schema=schema,
        secret_key=TEST_SECRET,
        bcrypt_rounds=4,
        db_pool_size=4,
        flowviz_passwordless_login=False,
        # A loaded CI machine can hold the projector back for seconds; a POST that timed
        # out waiting would answer before its row is readable and the next GET would 404.
        flowviz_read_your_writes_timeout=15.0,
    )


@pytest.fixture
def make_container(settings: Settings) -> Iterator:
    """Builds containers on the test's schema and closes them all afterwards."""
    built: list[Container] = []

    def make(*, run_projector: bool = False, **overrides: object) -> Container:
        container = Container(settings.model_copy(update=overrides), run_projector=run_projector)
        built.append(container)
        return container

    yield make
    for container in reversed(built):
        container.close()


@pytest.fixture
def container(make_container) -> Container:
    """Ledger and read side without a running projector: tests drive it by hand."""
    return make_container()


@pytest.fixture
def ledger(container: Container):
    return container.ledger
