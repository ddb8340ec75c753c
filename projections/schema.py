"""Read tables. The first four keep the legacy server's columns for existing SQL reports."""

from __future__ import annotations

from psycopg import Connection

LEGACY_TABLES = ("users", "lots", "lot_genealogy", "qc_decisions")
OWN_TABLES = ("lot_state", "lot_edges", "lot_json", "user_state")
READ_TABLES = LEGACY_TABLES + OWN_TABLES

DDL = """
CREATE TABLE IF NOT EXISTS users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    full_name text,
    role text NOT NULL,
    created_at timestamptz NOT NULL,
    last_login timestamptz
);
CREATE TABLE IF NOT EXISTS lots (
    id uuid PRIMARY KEY,
    lot_code text NOT NULL UNIQUE,
    lot_type text,
    production_run_id uuid,
    phase_id uuid,
    operator_id uuid,
    weight_kg numeric,
    temperature_c numeric,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS lot_genealogy (
    id uuid PRIMARY KEY,
    parent_lot_id uuid NOT NULL,
    child_lot_id uuid NOT NULL,
    quantity_used_kg numeric,
    linked_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS lot_genealogy_parent_idx ON lot_genealogy (parent_lot_id);
CREATE INDEX IF NOT EXISTS lot_genealogy_child_idx ON lot_genealogy (child_lot_id);
CREATE TABLE IF NOT EXISTS qc_decisions (
    id uuid PRIMARY KEY,
    lot_id uuid,
    qc_gate_id uuid,
    operator_id uuid,
    decision text,
    notes text,
    temperature_c numeric,
    digital_signature text,
    decided_at timestamptz
);
CREATE INDEX IF NOT EXISTS qc_decisions_lot_idx ON qc_decisions (lot_id, decided_at);

-- What the API needs beyond the legacy columns.
CREATE TABLE IF NOT EXISTS lot_state (
    lot_id uuid PRIMARY KEY,
    version bigint NOT NULL,          -- last applied event of the lot: replays are no-ops
    qc_status text,
    qc_decided_at timestamptz,
    consumed_kg numeric NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lot_edges (
    child_lot_id uuid NOT NULL,
    ordinal int NOT NULL,             -- position in the registration's inputs: parents keep it
    parent_lot_id uuid NOT NULL,
    quantity_used_kg numeric NOT NULL,
    linked_at timestamptz NOT NULL,
    PRIMARY KEY (child_lot_id, ordinal)
);
CREATE INDEX IF NOT EXISTS lot_edges_parent_idx ON lot_edges (parent_lot_id, linked_at);
-- Each lot row exactly as the API answers it, rendered once when the lot is registered
-- (a lot row never changes afterwards): traceability is then assembled by one statement.
CREATE TABLE IF NOT EXISTS lot_json (
    lot_id uuid PRIMARY KEY,
    lot_code text NOT NULL UNIQUE,
    body text NOT NULL
);
CREATE TABLE IF NOT EXISTS user_state (
    user_id uuid PRIMARY KEY,
    version bigint NOT NULL,
    active boolean NOT NULL
);
-- Browsing lots: pages newest first by keyset, and codes by prefix (LIKE 'x%' can use
-- text_pattern_ops whatever the database's collation).
CREATE INDEX IF NOT EXISTS lots_created_idx ON lots (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS lots_code_prefix_idx ON lots (lot_code text_pattern_ops);

CREATE TABLE IF NOT EXISTS projection_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Moves a projection to the position its batch reached, only from the position the
-- batch was filtered against, and announces it at commit. If another projector moved it
-- first, the error fails the batch's whole transaction on the server, in the round trip
-- that carries the batch's rows and its commit.
CREATE OR REPLACE FUNCTION projection_advance(
    p_name text, p_expected bigint, p_position bigint, p_channel text, p_payload text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE projection_tracking SET position = p_position, updated_at = now()
     WHERE name = p_name AND position = p_expected;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection % is no longer at position %', p_name, p_expected
            USING ERRCODE = '{tracking_moved}';
    END IF;
    PERFORM pg_notify(p_channel, p_payload);
END $$;
"""

# The SQLSTATE projection_advance raises when another projector moved the position first.
TRACKING_MOVED = "FV001"
DDL = DDL.replace("{tracking_moved}", TRACKING_MOVED)


def create_read_tables(conn: Connection) -> None:
    with conn.transaction():
        # Several processes may start at once; serialize DDL so they don't trip on each other.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('flowviz:read-schema'))")
        conn.execute(DDL)


def truncate_read_tables(conn: Connection, projection: str) -> None:
    """Empties every read table and rewinds the projection to the start of the log."""
    conn.execute("TRUNCATE " + ", ".join(READ_TABLES))
    conn.execute(
        "INSERT INTO projection_tracking (name, position) VALUES (%s, 0) "
        "ON CONFLICT (name) DO UPDATE SET position = 0, updated_at = now()",
        (projection,),
    )


def analyze_read_tables(conn: Connection) -> None:
    """Fresh planner statistics. Without them (autovacuum off, or not yet run after a bulk
    load) PostgreSQL guesses huge row counts for the genealogy walk, scans whole tables
    and JIT-compiles the plan: a recall that takes milliseconds took most of a second."""
    conn.execute("ANALYZE " + ", ".join(READ_TABLES))
