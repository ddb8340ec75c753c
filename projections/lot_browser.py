"""Read queries for browsing lots: filtered pages newest first, and one lot in detail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.queries import LOT_COLUMNS, Row, storable

_LOT = ", ".join("l." + column.strip() for column in LOT_COLUMNS.split(","))

# Newest first; the id breaks ties between lots registered in the same microsecond, so a
# page boundary never skips or repeats one.
LOT_PAGE = f"""
SELECT {_LOT}, s.qc_status
  FROM lots l LEFT JOIN lot_state s ON s.lot_id = l.id
 WHERE {{where}}
 ORDER BY l.created_at DESC, l.id DESC
 LIMIT %s
"""

# One statement, so the numbers and both lists come from one snapshot even while the
# projector is applying new children. Parallel arrays keep each value's own type.
LOT_DETAIL = f"""
SELECT {_LOT}, s.qc_status,
       coalesce(s.consumed_kg, 0) AS consumed_kg,
       l.weight_kg - coalesce(s.consumed_kg, 0) AS remaining_kg,
       i.ids AS input_ids, i.codes AS input_codes, i.kgs AS input_kgs,
       o.ids AS output_ids, o.codes AS output_codes, o.kgs AS output_kgs,
       o.linked AS output_linked_at
  FROM lots l
  LEFT JOIN lot_state s ON s.lot_id = l.id
 CROSS JOIN LATERAL (
       SELECT array_agg(e.parent_lot_id ORDER BY e.ordinal) AS ids,
              array_agg(p.lot_code ORDER BY e.ordinal) AS codes,
              array_agg(e.quantity_used_kg ORDER BY e.ordinal) AS kgs
         FROM lot_edges e JOIN lots p ON p.id = e.parent_lot_id
        WHERE e.child_lot_id = l.id) i
 CROSS JOIN LATERAL (
       SELECT array_agg(e.child_lot_id ORDER BY e.linked_at, e.child_lot_id, e.ordinal) AS ids,
              array_agg(c.lot_code ORDER BY e.linked_at, e.child_lot_id, e.ordinal) AS codes,
              array_agg(e.quantity_used_kg ORDER BY e.linked_at, e.child_lot_id, e.ordinal)
                  AS kgs,
              array_agg(e.linked_at ORDER BY e.linked_at, e.child_lot_id, e.ordinal) AS linked
         FROM lot_edges e JOIN lots c ON c.id = e.child_lot_id
        WHERE e.parent_lot_id = l.id) o
 WHERE l.lot_code = %s
"""


@dataclass(frozen=True)
class Position:
    """Where a page ended: the next page starts strictly after this lot."""

    created_at: datetime
    id: UUID


@dataclass(frozen=True)
class LotFilter:
    lot_type: str | None = None
    qc_status: str | None = None  # a decision, or "NONE" for lots without one yet
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    code_prefix: str | None = None


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching codes that start with `prefix` taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _where(filters: LotFilter, after: Position | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if filters.lot_type is not None:
        clauses.append("l.lot_type = %s")
        params.append(filters.lot_type)
    if filters.qc_status == "NONE":
        clauses.append("s.qc_status IS NULL")
    elif filters.qc_status is not None:
        clauses.append("s.qc_status = %s")
        params.append(filters.qc_status)
    if filters.created_from is not None:
        clauses.append("l.created_at >= %s")
        params.append(filters.created_from)
    if filters.created_to is not None:
        clauses.append("l.created_at < %s")
        params.append(filters.created_to)
    if filters.code_prefix:
        clauses.append("l.lot_code LIKE %s ESCAPE '\\'")
        params.append(like_prefix(filters.code_prefix))
    if after is not None:
        clauses.append("(l.created_at, l.id) < (%s, %s)")
        params += [after.created_at, after.id]
    return " AND ".join(clauses) or "true", params


async def lot_page(
    pool: AsyncConnectionPool, filters: LotFilter, *, limit: int, after: Position | None = None
) -> tuple[list[Row], Position | None]:
    """Up to `limit` lot rows (with `qc_status`), and where the next page starts, if any."""
    where, params = _where(filters, after)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        # One row more than asked tells whether another page exists.
        await cur.execute(LOT_PAGE.format(where=where), (*params, limit + 1))
        rows = await cur.fetchall()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, Position(rows[-1]["created_at"], rows[-1]["id"])


async def lot_detail(pool: AsyncConnectionPool, lot_code: str) -> Row | None:
    """The lot row with `qc_status`, `consumed_kg`, `remaining_kg`, `inputs` and `outputs`."""
    if not storable(lot_code):
        return None
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LOT_DETAIL, (lot_code,), prepare=True)
        row = await cur.fetchone()
    if row is None:
        return None
    inputs = zip(
        *(row.pop(k) or [] for k in ("input_ids", "input_codes", "input_kgs")), strict=True
    )
    outputs = zip(
        *(row.pop(k) or [] for k in ("output_ids", "output_codes", "output_kgs",
                                     "output_linked_at")),
        strict=True,
    )
    row["inputs"] = [
        {"lot_id": i, "lot_code": code, "quantity_used_kg": kg} for i, code, kg in inputs
    ]
    row["outputs"] = [
        {"lot_id": i, "lot_code": code, "quantity_used_kg": kg, "linked_at": at}
        for i, code, kg, at in outputs
    ]
    return row
