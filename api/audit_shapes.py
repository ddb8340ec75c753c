"""Bodies for auditors: the deep genealogy graph, recalls and source investigations.

Lot rows render exactly as the legacy rows do; recorded decimals keep their scale as in
the legacy contract, computed kg have 3 decimals, shares 4, timestamps ms with `Z`.
"""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api import legacy_shapes
from api.legacy_shapes import LotRow
from projections.genealogy import FINISHED_GOOD, Edge, Genealogy, Recall, SourceTrace, Traced


def kg(value: Decimal | None) -> str | None:
    return None if value is None else _fixed(value, "0.001")


def share(value: Decimal | None) -> str | None:
    return None if value is None else _fixed(value, "0.0001")


def _fixed(value: Decimal, places: str) -> str:
    with localcontext(prec=50):
        return format(value.quantize(Decimal(places), rounding=ROUND_HALF_UP), "f")


def graph(g: Genealogy) -> dict[str, Any]:
    return {
        "root": legacy_shapes.lot(g.root.lot),
        "nodes": [
            {
                "lot": legacy_shapes.lot(n.lot),
                "direction": n.direction,
                "depth": n.depth,
                "qc_status": n.qc_status,
            }
            for n in g.nodes
        ],
        "edges": [
            {
                "parent_lot_id": legacy_shapes.uuid(e.parent_lot_id),
                "child_lot_id": legacy_shapes.uuid(e.child_lot_id),
                "quantity_used_kg": legacy_shapes.decimal(e.quantity_used_kg),
            }
            for e in g.edges
        ],
    }


def _traced(t: Traced, key: str) -> dict[str, Any]:
    return {
        "lot": legacy_shapes.lot(t.node.lot),
        "depth": t.node.depth,
        "qc_status": t.node.qc_status,
        key: kg(t.kg),
    }


def recall(r: Recall, elapsed_ms: float) -> dict[str, Any]:
    affected = [_traced(t, "suspect_kg") for t in r.lots]
    finished = [  # the same dicts: each lot row rendered once
        a for a, t in zip(affected, r.lots, strict=True) if t.node.lot["lot_type"] == FINISHED_GOOD
    ]
    return {
        "root": legacy_shapes.lot(r.root.node.lot),
        "direction": "downstream",
        "affected_lots": affected,
        "finished_goods": finished,
        "summary": {
            "affected_lots": len(affected),
            "finished_goods": len(finished),
            "suspect_root_weight_kg": kg(r.root.kg),
            "root_consumed_kg": kg(r.root_consumed_kg),
            "root_unconsumed_kg": kg(r.root_unconsumed_kg),
            "kg_in_finished_goods": kg(r.kg_in_finished_goods),
            "kg_in_intermediate_stock": kg(r.kg_in_intermediate_stock),
            "share_accounted_for": share(r.share_accounted_for),
            "mass_balance_complete": r.complete,
            "unknown_weight_lots": r.unknown_weight_lots,
            "depth_limit_reached": r.depth_limit_reached,
            "elapsed_ms": round(elapsed_ms, 3),
        },
    }


def source_trace(s: SourceTrace, elapsed_ms: float) -> dict[str, Any]:
    return {
        "root": legacy_shapes.lot(s.root.node.lot),
        "direction": "upstream",
        "input_lots": [_traced(t, "kg_in_root") for t in s.lots],
        "raw_lots": [_traced(t, "kg_in_root") for t in s.raw_lots],
        "summary": {
            "input_lots": len(s.lots),
            "raw_lots": len(s.raw_lots),
            "root_weight_kg": kg(s.root.kg),
            "kg_from_raw_lots": kg(s.kg_from_raw_lots),
            "mass_balance_complete": s.complete,
            "unknown_weight_lots": s.unknown_weight_lots,
            "depth_limit_reached": s.depth_limit_reached,
            "elapsed_ms": round(elapsed_ms, 3),
        },
    }


# --- the FDA's "electronic sortable spreadsheet" (FSMA 204 transformation KDEs) -----------

CSV_COLUMNS = (
    "traceability_lot_code", "product_description", "lot_type", "quantity",
    "unit_of_measure", "input_lot_codes_and_quantities", "date_completed", "location",
    "reference_document_type", "reference_document_number", "depth", "qc_status",
)
# Stage names from the plant's flow, for lots whose metadata names no product.
STAGES = {
    "RAW": "raw material", "DEB": "deboned meat", "BULK": "bulk meat", "MIX": "mix",
    "SKW": "skewers", "FRZ": "frozen", "FG": "finished goods",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """Spreadsheet apps run a cell starting like a formula; codes and metadata are user
    text, so such a cell is kept as text with a leading apostrophe (OWASP's advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _metadata_text(metadata: Any, *keys: str) -> str:
    if isinstance(metadata, dict):
        for key in keys:
            if metadata.get(key) not in (None, ""):
                return str(metadata[key])
    return ""


def _inputs_cell(inputs: list[Edge]) -> str:
    return "; ".join(
        f"{e.parent_lot_code}:{legacy_shapes.decimal(e.quantity_used_kg)} kg" for e in inputs
    )


def csv_rows(traced: list[Traced], inputs: list[Edge], kg_column: str) -> bytes:
    """One row per lot (transformation event), the traced lot first."""
    by_child: dict[Any, list[Edge]] = {}
    for e in inputs:
        by_child.setdefault(e.child_lot_id, []).append(e)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow((*CSV_COLUMNS, kg_column))
    for t in traced:
        lot, node = t.node.lot, t.node
        metadata = lot["metadata"]
        product = _metadata_text(metadata, "product_description", "product", "description")
        writer.writerow(
            _cell(v)
            for v in (
                lot["lot_code"],
                product or STAGES.get(lot["lot_type"] or "", ""),
                lot["lot_type"],
                legacy_shapes.decimal(lot["weight_kg"]),
                "kg" if lot["weight_kg"] is not None else "",
                _inputs_cell(by_child.get(node.id, [])),
                legacy_shapes.timestamp(lot["created_at"]),
                _metadata_text(metadata, "location", "site"),
                "production_run" if lot["production_run_id"] else "",
                legacy_shapes.uuid(lot["production_run_id"]),
                node.depth,
                node.qc_status,
                kg(t.kg),
            )
        )
    return out.getvalue().encode()


# --- the same shapes, described for the OpenAPI document ---------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphNode(_Doc):
    lot: LotRow
    direction: str = Field(examples=["downstream"], description="root, upstream or downstream")
    depth: int
    qc_status: str | None = Field(examples=["PASS"], description="as of as_of, if given")


class GraphEdge(_Doc):
    parent_lot_id: str
    child_lot_id: str
    quantity_used_kg: str = Field(examples=["40.5"])


class GraphBody(_Doc):
    root: LotRow
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class RecallLot(_Doc):
    lot: LotRow
    depth: int
    qc_status: str | None
    suspect_kg: str | None = Field(
        None, description="kg of the suspect lot it contains; null if a weight is unknown"
    )
    kg_in_root: str | None = Field(
        None, description="upstream: kg of this lot that went into the root"
    )


class RecallBody(BaseModel):
    root: LotRow
    direction: str = Field(examples=["downstream"])
    affected_lots: list[RecallLot] | None = Field(None, description="downstream")
    finished_goods: list[RecallLot] | None = Field(None, description="downstream")
    input_lots: list[RecallLot] | None = Field(None, description="upstream")
    raw_lots: list[RecallLot] | None = Field(None, description="upstream")
    summary: dict[str, Any]
