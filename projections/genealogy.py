"""Deep genealogy: a lot's whole graph up and/or down in one statement, and mass balance.

The walk is one recursive query over `lot_edges`. It keeps one row per (lot, depth)
with UNION rather than a path per row (PostgreSQL's CYCLE clause): genealogy fans in at
every mix, so the number of paths multiplies stage by stage, while (lot, depth) pairs
stay at most lots × max_depth. A cycle (impossible through the ledger, whose inputs must
already exist) simply runs out at max_depth.

As of a time T: an edge counts if it was linked at or before T (its lots existed by
then), and a lot's QC status is its latest decision at or before T.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Literal
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.queries import LOT_COLUMNS, Row, storable

Direction = Literal["upstream", "downstream", "both"]
DEFAULT_MAX_DEPTH = 50
MAX_DEPTH = 100
FINISHED_GOOD = "FG"

LOT_KEYS = tuple(column.strip() for column in LOT_COLUMNS.split(","))
_LOT = ", ".join("l." + key for key in LOT_KEYS)
_EDGE_LOT = ", ".join(["e.child_lot_id"] + ["NULL"] * (len(LOT_KEYS) - 1))
_UNTIL = "coalesce(%(as_of)s::timestamptz, 'infinity')"

# Node rows, then edge rows (an edge row's `id` is its child's) as of T: the edges
# between nodes, or (with inputs) every input of every node and its parent's lot code.
_GENEALOGY = f"""
WITH RECURSIVE
root AS (SELECT id FROM lots WHERE lot_code = %(code)s),
down (lot_id, depth) AS (
    SELECT id, 0 FROM root WHERE %(down)s::bool
    UNION
    SELECT e.child_lot_id, d.depth + 1
      FROM down d JOIN lot_edges e ON e.parent_lot_id = d.lot_id
     WHERE d.depth < %(max_depth)s::int AND e.linked_at <= {_UNTIL}
),
up (lot_id, depth) AS (
    SELECT id, 0 FROM root WHERE %(up)s::bool
    UNION
    SELECT e.parent_lot_id, u.depth + 1
      FROM up u JOIN lot_edges e ON e.child_lot_id = u.lot_id
     WHERE u.depth < %(max_depth)s::int AND e.linked_at <= {_UNTIL}
),
nodes (direction, lot_id, depth) AS (
    SELECT 'root', id, 0 FROM root
    UNION ALL
    SELECT 'upstream', lot_id, min(depth) FROM up
     WHERE lot_id <> (SELECT id FROM root) GROUP BY lot_id
    UNION ALL
    SELECT 'downstream', lot_id, min(depth) FROM down
     WHERE lot_id <> (SELECT id FROM root) GROUP BY lot_id
)
SELECT 'node' AS kind, n.direction, n.depth,
       NULL::uuid AS parent_lot_id, NULL::text AS parent_lot_code,
       NULL::int AS ordinal, NULL::numeric AS quantity_used_kg,
       {_LOT},
       CASE WHEN %(as_of)s::timestamptz IS NULL THEN s.qc_status
            ELSE (SELECT q.decision FROM qc_decisions q
                   WHERE q.lot_id = l.id AND q.decided_at <= %(as_of)s::timestamptz
                   ORDER BY q.decided_at DESC LIMIT 1)
       END AS qc_status
  FROM nodes n JOIN lots l ON l.id = n.lot_id LEFT JOIN lot_state s ON s.lot_id = l.id
UNION ALL
SELECT 'edge', NULL, NULL, e.parent_lot_id, {{parent_code}}, e.ordinal, e.quantity_used_kg,
       {_EDGE_LOT}, NULL
  FROM (SELECT DISTINCT lot_id FROM nodes) n
  JOIN lot_edges e ON e.child_lot_id = n.lot_id
 WHERE e.linked_at <= {_UNTIL} {{and_inside}}
"""
GENEALOGY = _GENEALOGY.format(
    parent_code="NULL", and_inside="AND e.parent_lot_id IN (SELECT lot_id FROM nodes)"
)
GENEALOGY_WITH_INPUTS = _GENEALOGY.format(
    parent_code="(SELECT p.lot_code FROM lots p WHERE p.id = e.parent_lot_id)", and_inside=""
)
_DIRECTION_ORDER = {"root": 0, "upstream": 1, "downstream": 2}


@dataclass(frozen=True)
class Node:
    lot: Row  # the legacy lot columns
    direction: str  # root | upstream | downstream
    depth: int
    qc_status: str | None

    @property
    def id(self) -> UUID:
        return self.lot["id"]


@dataclass(frozen=True)
class Edge:
    parent_lot_id: UUID
    parent_lot_code: str
    child_lot_id: UUID
    ordinal: int
    quantity_used_kg: Decimal


@dataclass(frozen=True)
class Genealogy:
    nodes: list[Node]  # the root first
    inputs: list[Edge]  # the edges; fetched with_inputs, every input of every node
    max_depth: int

    @property
    def root(self) -> Node:
        return self.nodes[0]

    @property
    def edges(self) -> list[Edge]:
        """The graph's edges: inputs whose parent is in the graph too, in node order."""
        ids = {n.id.int for n in self.nodes}
        return [e for e in self.inputs if e.parent_lot_id.int in ids]

    @property
    def depth_limit_reached(self) -> bool:
        return any(n.depth >= self.max_depth for n in self.nodes)


async def genealogy(
    pool: AsyncConnectionPool,
    lot_code: str,
    *,
    direction: Direction = "both",
    max_depth: int = DEFAULT_MAX_DEPTH,
    as_of: datetime | None = None,
    with_inputs: bool = False,
) -> Genealogy | None:
    """The lot's graph, or None when no lot has that code (whenever it was created).

    Nodes come root first, then upstream, then downstream, nearest first. `inputs` are
    the graph's edges; with_inputs adds every other input of its lots (a spreadsheet
    lists them; the graph and mass balance need only the edges, a quarter less work)."""
    if not storable(lot_code):
        return None
    params = {
        "code": lot_code,
        "down": direction in ("downstream", "both"),
        "up": direction in ("upstream", "both"),
        "max_depth": max_depth,
        "as_of": as_of,
    }
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(GENEALOGY_WITH_INPUTS if with_inputs else GENEALOGY, params,
                          prepare=True)
        rows = await cur.fetchall()
    nodes = sorted(
        (_node(r) for r in rows if r["kind"] == "node"),
        key=lambda n: (_DIRECTION_ORDER[n.direction], n.depth, n.lot["created_at"],
                       n.lot["lot_code"]),
    )
    if not nodes:
        return None
    position = {n.id.int: i for i, n in enumerate(nodes)}
    code = {n.id.int: n.lot["lot_code"] for n in nodes}
    inputs = sorted(
        (
            Edge(r["parent_lot_id"], r["parent_lot_code"] or code.get(r["parent_lot_id"].int, ""),
                 r["id"], r["ordinal"], r["quantity_used_kg"])
            for r in rows
            if r["kind"] == "edge"
        ),
        key=lambda e: (position[e.child_lot_id.int], e.ordinal),
    )
    return Genealogy(nodes, inputs, max_depth)


def _node(row: Row) -> Node:
    lot = {k: row[k] for k in LOT_KEYS}
    return Node(lot, row["direction"], row["depth"], row["qc_status"])


# --- mass balance -------------------------------------------------------------------------


@dataclass(frozen=True)
class Traced:
    node: Node
    # Downstream: kg of the suspect root this lot contains. Upstream: kg of this lot
    # that went into the root. None when a weight on the way is unknown (NULL or 0).
    kg: Decimal | None


@dataclass(frozen=True)
class Recall:
    """Where the suspect root's kg went: every lot downstream with the kg of it inside.

    share_accounted_for is the fraction of the root's weight that the ledger places at
    rest: (kg_in_finished_goods + kg_in_intermediate_stock + root_unconsumed_kg) / root
    weight, where a lot's kg rest in it unless consumed further (the root's own unused
    stock counts too). A lot's suspect kg are split among its consumers in proportion to
    the kg each used of its weight, so the share is 1 when every weight on the way is
    known, and lower by what passed through a lot of unknown weight. Lots at the depth
    limit count as at rest (what they passed on was not fetched): then `complete` is
    false and `depth_limit_reached` true. It tracks the root's kg as they were used, so
    processing yield (60 kg of DEB from 80 kg of RAW) does not lower it. None when the
    root's weight is unknown.
    """

    root: Traced
    lots: list[Traced]  # affected lots, nearest first
    root_consumed_kg: Decimal
    root_unconsumed_kg: Decimal | None
    kg_in_finished_goods: Decimal
    kg_in_intermediate_stock: Decimal
    share_accounted_for: Decimal | None
    unknown_weight_lots: list[str]  # passed kg on without a weight to split them by
    complete: bool
    depth_limit_reached: bool

    @property
    def finished_goods(self) -> list[Traced]:
        return [t for t in self.lots if t.node.lot["lot_type"] == FINISHED_GOOD]


@dataclass(frozen=True)
class SourceTrace:
    """Every input back to raw lots, each with the kg of it that went into the root."""

    root: Traced
    lots: list[Traced]  # input lots, nearest first
    raw_lots: list[Traced]  # inputs that have no inputs themselves
    kg_from_raw_lots: Decimal
    unknown_weight_lots: list[str]
    complete: bool
    depth_limit_reached: bool


def _weight(node: Node) -> Decimal | None:
    w = node.lot["weight_kg"]
    return w if w else None  # NULL or 0: nothing to split by


@dataclass
class _Spread:
    """kg carried from the root along the edges, nodes by position in g.nodes."""

    kg: list[Decimal | None]
    passed_on: list[Decimal]  # kg each lot gave along the edges followed
    unknown_weight: list[int]  # lots that gave kg without a weight to split them by


def _spread(g: Genealogy, *, upstream: bool) -> _Spread:
    """Each edge src→dst carries kg(src) × quantity_used / weight(src) to dst, from the root
    on in topological order; downstream src is the parent, upstream the child. Lots on a
    cycle never come up in that order, so their kg stay unknown instead of looping."""
    # Positions, not UUIDs, as keys: a UUID hashes and compares in Python code.
    at = {n.id.int: i for i, n in enumerate(g.nodes)}
    weights = [_weight(n) for n in g.nodes]
    into: list[list[tuple[int, Decimal]]] = [[] for _ in g.nodes]
    after: list[list[int]] = [[] for _ in g.nodes]
    passed_on = [Decimal(0)] * len(g.nodes)
    waiting = [0] * len(g.nodes)
    for e in g.edges:
        parent, child = at[e.parent_lot_id.int], at[e.child_lot_id.int]
        src, dst = (child, parent) if upstream else (parent, child)
        passed_on[src] += e.quantity_used_kg
        if dst != 0:  # into the root only through a cycle: the root's kg are given
            into[dst].append((src, e.quantity_used_kg))
            after[src].append(dst)
            waiting[dst] += 1
    kg: list[Decimal | None] = [None] * len(g.nodes)
    kg[0] = weights[0]
    unknown: set[int] = set()
    ready = deque([0])
    with localcontext(prec=50):
        while ready:
            i = ready.popleft()
            if i != 0:
                total: Decimal | None = Decimal(0)
                for src, q in into[i]:
                    if upstream and src == 0:
                        part: Decimal | None = q  # kg of an input in the root: as used
                    elif weights[src] is None:
                        unknown.add(src)
                        part = None
                    else:
                        s = kg[src]
                        part = None if s is None else s * q / weights[src]
                    total = None if part is None or total is None else total + part
                kg[i] = total
            for j in after[i]:
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
    return _Spread(kg, passed_on, sorted(unknown))


def recall(g: Genealogy) -> Recall:
    """Mass balance downstream of g's root (g fetched with direction='downstream')."""
    spread = _spread(g, upstream=False)
    kg, passed_on = spread.kg, spread.passed_on
    root = g.root
    root_w = _weight(root)
    in_fg, in_stock = Decimal(0), Decimal(0)
    with localcontext(prec=50):
        for i, n in enumerate(g.nodes[1:], start=1):
            rest = _at_rest(kg[i], _weight(n), passed_on[i])
            if rest is not None and n.lot["lot_type"] == FINISHED_GOOD:
                in_fg += rest
            elif rest is not None:
                in_stock += rest
        root_rest = None if root_w is None else root_w - passed_on[0]
        share = None if root_w is None else (in_fg + in_stock + root_rest) / root_w
    lots = [Traced(n, kg[i]) for i, n in enumerate(g.nodes) if i]
    return Recall(
        root=Traced(root, root_w),
        lots=lots,
        root_consumed_kg=passed_on[0],
        root_unconsumed_kg=root_rest,
        kg_in_finished_goods=in_fg,
        kg_in_intermediate_stock=in_stock,
        share_accounted_for=share,
        unknown_weight_lots=[g.nodes[i].lot["lot_code"] for i in spread.unknown_weight],
        complete=root_w is not None and all(t.kg is not None for t in lots)
        and not g.depth_limit_reached,
        depth_limit_reached=g.depth_limit_reached,
    )


def _at_rest(kg: Decimal | None, weight: Decimal | None, out: Decimal) -> Decimal | None:
    """The suspect kg a lot keeps: all of them if it passed nothing on, else the share of
    its weight not consumed (unknown without a weight)."""
    if kg is None or not out:
        return kg
    return None if weight is None else kg * (weight - out) / weight


def source_trace(g: Genealogy) -> SourceTrace:
    """kg of each ancestor in g's root (g fetched with direction='upstream').

    `recall`'s rule reversed, so both agree: an input a of lot b put
    kg_in_root(b) × quantity_used(a→b) / weight(b) into the root; into the root
    itself, quantity_used(a→root).
    """
    spread = _spread(g, upstream=True)
    lots = [Traced(n, spread.kg[i]) for i, n in enumerate(g.nodes) if i]
    has_inputs = {e.child_lot_id.int for e in g.inputs}
    # Beyond the depth limit a lot's inputs were not fetched: it may not be raw.
    raw = [
        t for t in lots if t.node.id.int not in has_inputs and t.node.depth < g.max_depth
    ]
    return SourceTrace(
        root=Traced(g.root, _weight(g.root)),
        lots=lots,
        raw_lots=raw,
        kg_from_raw_lots=sum((t.kg for t in raw if t.kg is not None), Decimal(0)),
        unknown_weight_lots=[g.nodes[i].lot["lot_code"] for i in spread.unknown_weight],
        complete=all(t.kg is not None for t in lots) and not g.depth_limit_reached,
        depth_limit_reached=g.depth_limit_reached,
    )
