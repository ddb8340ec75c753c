"""Connection pools for the read side, pointed at the configured schema."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool


def schema_conninfo(database_url: str, schema: str) -> str:
    params = conninfo_to_dict(database_url)
    # JIT pays off for long analytical queries; ours are short, and compiling one that
    # the planner mis-estimated cost half a second per recall.
    options = f"{params.get('options') or ''} -c search_path={schema} -c jit=off".strip()
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


async def _autocommit_async(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def open_async_pool(conninfo: str, *, max_size: int = 10, name: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=max_size, configure=_autocommit_async, name=name,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


def free_connections(conninfo: str) -> int:
    """Connections the server can still accept from ordinary roles: its limit, less those
    kept for superusers, less every session open now (any database, any client)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    return max(0, int(row[0])) if row else 0
