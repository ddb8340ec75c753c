"""PostgreSQL settings for the event store, and the guard that keeps events immutable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore


def postgres_env(
    database_url: str,
    *,
    schema: str = "public",
    pool_size: int = 10,
    max_overflow: int = 10,
    group_commit: bool = True,
) -> dict[str, str]:
    """The `eventsourcing` environment for a libpq URL (host may be a socket directory)."""
    params = conninfo_to_dict(database_url)
    recorder = {"APPLICATION_RECORDER_TOPIC": "ledger.group_commit:GroupCommitRecorder"}
    return {
        **(recorder if group_commit else {}),
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        "POSTGRES_LOCK_TIMEOUT": "5",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
        "CREATE_TABLE": "y",
    }


def ensure_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


# Processes starting together (uvicorn workers) would otherwise replace the same function
# or trigger at once and fail with "tuple concurrently updated".
_SETUP_KEY = "hashtext('flowviz:event-store-setup')"
SETUP_LOCK = f"SELECT pg_advisory_lock({_SETUP_KEY})"
SETUP_UNLOCK = f"SELECT pg_advisory_unlock({_SETUP_KEY})"
SETUP_XACT_LOCK = f"SELECT pg_advisory_xact_lock({_SETUP_KEY})"


def forbid_rewrites(
    datastore: PostgresDatastore, events_table: str, what: Literal["events", "snapshots"] = "events"
) -> None:
    """Refuse UPDATE, DELETE and TRUNCATE on the events table, whoever asks.

    A superuser can still disable the trigger; the hash chain (a later issue) is what
    proves history was not rewritten. This stops accidents and ordinary roles. The
    snapshots table is guarded the same way: the library only ever inserts into it, and
    a snapshot is what the ledger checks a busy lot's invariants against.
    """
    schema = Identifier(datastore.schema)
    table = Identifier(events_table)
    function = Identifier(f"{events_table}_immutable")
    with datastore.transaction(commit=True) as curs:
        curs.execute(SETUP_XACT_LOCK)
        curs.execute(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION '" + what + " are immutable: % refused on %',"
                " TG_OP, TG_TABLE_NAME; END $$"
            ).format(schema=schema, function=function)
        )
        for suffix, timing in (("rows", "FOR EACH ROW"), ("truncate", "FOR EACH STATEMENT")):
            ops = "UPDATE OR DELETE" if suffix == "rows" else "TRUNCATE"
            trigger = Identifier(f"{events_table}_no_{suffix}")
            curs.execute(
                SQL(
                    "CREATE OR REPLACE TRIGGER {trigger} BEFORE " + ops + " ON {schema}.{table} "
                    + timing + " EXECUTE FUNCTION {schema}.{function}()"
                ).format(trigger=trigger, schema=schema, table=table, function=function)
            )
