from __future__ import annotations

import pytest

from tests.integration.cli_process import cli_env


@pytest.fixture
def db_env(database_url: str, schema: str) -> dict[str, str]:
    """The environment of a `flowviz` process that uses this test's database and schema."""
    return cli_env(DATABASE_URL=database_url, DATABASE_SCHEMA=schema)
