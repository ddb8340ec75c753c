"""Connection pools for the read side, pointed at the configured schema."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool


def schema_conninfo(database_url: str, schema: str) -> str:
    params = conninfo_to_dict(database_url)
    options = f"{params.get('options') or ''} -c search_path={schema}".strip()
    return make_conninfo(**{**params, "options": options})


def _autocommit(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True


def open_pool(conninfo: str, *, min_size: int = 2, max_size: int = 10, name: str) -> ConnectionPool:
    pool = ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        configure=_autocommit,
        name=name,
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool
