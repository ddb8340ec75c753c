"""Read queries the API answers from. Each returns plain rows, not response shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

Row = dict[str, Any]

LOT_COLUMNS = (
    "id, lot_code, lot_type, production_run_id, phase_id, operator_id,"
    " weight_kg, temperature_c, metadata, created_at"
)
_L = ", ".join(f"l.{c.strip()}" for c in LOT_COLUMNS.split(","))

# Central lot, its parents in input order, its children in the order they were made:
# one statement, one round trip.
TRACEABILITY = f"""
WITH c AS (SELECT {LOT_COLUMNS} FROM lots WHERE lot_code = %s)
SELECT 0 AS rel, NULL::timestamptz AS linked_at, 0 AS ordinal, c.* FROM c
UNION ALL
SELECT 1, e.linked_at, e.ordinal, {_L}
  FROM c JOIN lot_edges e ON e.child_lot_id = c.id JOIN lots l ON l.id = e.parent_lot_id
UNION ALL
SELECT 2, e.linked_at, e.ordinal, {_L}
  FROM c JOIN lot_edges e ON e.parent_lot_id = c.id JOIN lots l ON l.id = e.child_lot_id
ORDER BY rel, linked_at, ordinal
"""


@dataclass(frozen=True)
class Traceability:
    central: Row
    parents: list[Row]
    children: list[Row]


@dataclass(frozen=True)
class UserAccess:
    role: str
    active: bool


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    head: int
    updated_at: datetime | None

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


class ReadModel:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def traceability(self, lot_code: str) -> Traceability | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(TRACEABILITY, (lot_code,), prepare=True).fetchall()
        if not rows:
            return None
        strip = ("rel", "linked_at", "ordinal")
        lots = [(r["rel"], {k: v for k, v in r.items() if k not in strip}) for r in rows]
        return Traceability(
            central=lots[0][1],
            parents=[lot for rel, lot in lots if rel == 1],
            children=[lot for rel, lot in lots if rel == 2],
        )

    def lot(self, lot_id: UUID) -> Row | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                f"SELECT {LOT_COLUMNS} FROM lots WHERE id = %s", (lot_id,), prepare=True
            ).fetchone()

    def qc_decision(self, decision_id: UUID) -> Row | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT id, lot_id, qc_gate_id, operator_id, decision, notes, temperature_c,"
                " digital_signature, decided_at FROM qc_decisions WHERE id = %s",
                (decision_id,),
                prepare=True,
            ).fetchone()

    def user_access(self, user_id: UUID) -> UserAccess | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT u.role, s.active FROM users u JOIN user_state s ON s.user_id = u.id"
                " WHERE u.id = %s",
                (user_id,),
                prepare=True,
            ).fetchone()
        return UserAccess(role=row[0], active=row[1]) if row else None

    def projection_status(self, events_table: str) -> list[ProjectionStatus]:
        with self.pool.connection() as conn:
            head_row = conn.execute(
                SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                    Identifier(events_table)
                )
            ).fetchone()
            head = int(head_row[0]) if head_row else 0
            rows = conn.execute(
                "SELECT name, position, updated_at FROM projection_tracking ORDER BY name"
            ).fetchall()
        return [ProjectionStatus(name, int(pos), head, at) for name, pos, at in rows]
