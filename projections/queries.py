"""Read queries the API answers from. Each returns plain rows, not response shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from projections.coalescer import Coalescer

Row = dict[str, Any]

LOT_COLUMNS = (
    "id, lot_code, lot_type, production_run_id, phase_id, operator_id,"
    " weight_kg, temperature_c, metadata, created_at"
)
QC_DECISION_BY_ID = (
    "SELECT id, lot_id, qc_gate_id, operator_id, decision, notes, temperature_c,"
    " digital_signature, decided_at FROM qc_decisions WHERE id = %s"
)

# A lot's rendered row, its parents' in input order and its children's in the order they
# were made, each list already joined by commas: one statement, one round trip.
TRACEABILITY_PARTS = """
SELECT c.lot_code, c.body AS central,
       coalesce((SELECT string_agg(p.body, ',' ORDER BY e.ordinal)
                   FROM lot_edges e JOIN lot_json p ON p.lot_id = e.parent_lot_id
                  WHERE e.child_lot_id = c.lot_id), '') AS parents,
       coalesce((SELECT string_agg(ch.body, ',' ORDER BY e.linked_at, e.child_lot_id, e.ordinal)
                   FROM lot_edges e JOIN lot_json ch ON ch.lot_id = e.child_lot_id
                  WHERE e.parent_lot_id = c.lot_id), '') AS children
  FROM lot_json c
 WHERE c.lot_code = ANY(%s)
"""


@dataclass(frozen=True)
class TraceabilityParts:
    """JSON text: the central lot row, and the parents' and children's rows comma-joined."""

    central: str
    parents: str
    children: str


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


def storable(text: str) -> bool:
    """Whether PostgreSQL can hold this text: a code it cannot hold names no lot, and
    asking for it would only fail the statement (and every look-up sharing it)."""
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a percent-decoded path
        return False
    return "\x00" not in text


class ReadModel:
    def __init__(self, pool: ConnectionPool, async_pool: AsyncConnectionPool | None = None):
        self.pool = pool
        # The hottest read runs on the event loop: no thread hop per request.
        self.async_pool = async_pool
        self._traceability: Coalescer[str, TraceabilityParts] | None = None

    async def traceability(self, lot_code: str) -> TraceabilityParts | None:
        if not storable(lot_code):
            return None
        if self._traceability is None:
            self._traceability = Coalescer(self._traceabilities)
        return await self._traceability.get(lot_code)

    async def _traceabilities(self, lot_codes: list[str]) -> dict[str, TraceabilityParts]:
        rows = await self._all_async(TRACEABILITY_PARTS, lot_codes)
        return {r.pop("lot_code"): TraceabilityParts(**r) for r in rows}

    def qc_decision(self, decision_id: UUID) -> Row | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(QC_DECISION_BY_ID, (decision_id,), prepare=True).fetchone()

    async def qc_decision_async(self, decision_id: UUID) -> Row | None:
        return await self._one_async(QC_DECISION_BY_ID, decision_id)

    def require_async_pool(self) -> AsyncConnectionPool:
        if self.async_pool is None:
            raise RuntimeError("no async pool: open one with projections.db.open_async_pool")
        return self.async_pool

    async def _all_async(self, sql: str, *params: object) -> list[Row]:
        pool = self.require_async_pool()
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params, prepare=True)
            return await cur.fetchall()

    async def _one_async(self, sql: str, *params: object) -> Row | None:
        rows = await self._all_async(sql, *params)
        return rows[0] if rows else None

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
