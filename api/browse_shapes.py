"""Bodies for browsing lots: the legacy lot row first, then what browsing adds to it."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from api import legacy_shapes
from api.legacy_shapes import LotRow
from projections.lot_browser import Position


def lot_list_item(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**legacy_shapes.lot(row), "qc_status": row["qc_status"]}


def lot_list(rows: Sequence[Mapping[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"lots": [lot_list_item(r) for r in rows], "next_cursor": next_cursor}


def lot_detail(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **lot_list_item(row),
        "consumed_kg": legacy_shapes.decimal(row["consumed_kg"]),
        "remaining_kg": legacy_shapes.decimal(row["remaining_kg"]),
        "inputs": [
            {
                "lot_id": legacy_shapes.uuid(i["lot_id"]),
                "lot_code": i["lot_code"],
                "quantity_used_kg": legacy_shapes.decimal(i["quantity_used_kg"]),
            }
            for i in row["inputs"]
        ],
        "outputs": [
            {
                "lot_id": legacy_shapes.uuid(o["lot_id"]),
                "lot_code": o["lot_code"],
                "quantity_used_kg": legacy_shapes.decimal(o["quantity_used_kg"]),
                "linked_at": legacy_shapes.timestamp(o["linked_at"]),
            }
            for o in row["outputs"]
        ],
    }


# The cursor keeps full microseconds: the bodies show milliseconds, and lots that share a
# millisecond must still fall on one side of a page boundary or the other.
def encode_cursor(position: Position) -> str:
    raw = f"{position.created_at.isoformat()}|{position.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; ValueError for anything this API did not hand out."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    created_at, _, lot_id = raw.partition("|")
    at = datetime.fromisoformat(created_at)
    if at.tzinfo is None:
        raise ValueError("cursor without a timezone")
    return Position(at, UUID(lot_id))


# --- for the OpenAPI document -------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LotListRow(LotRow):
    qc_status: str | None = Field(description="latest QC decision, null before any")


class LotListBody(_Doc):
    lots: list[LotListRow]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class LotInput(_Doc):
    lot_id: str
    lot_code: str
    quantity_used_kg: str


class LotOutput(LotInput):
    linked_at: str


class LotDetailBody(LotListRow):
    consumed_kg: str = Field(examples=["70.5"])
    remaining_kg: str | None = Field(description="null when the weight is unknown")
    inputs: list[LotInput] = Field(description="the lots it was made of, in input order")
    outputs: list[LotOutput] = Field(description="the lots made of it, in the order made")
