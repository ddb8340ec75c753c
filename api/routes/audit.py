"""Audit: a lot's history as recorded, replayable and hash-chained."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from api import history_shapes, legacy_shapes
from api.dependencies import Auditor, ContainerDep
from api.query_params import Instant
from api.responses import LegacyJSONResponse

router = APIRouter()


@router.get(
    "/api/lots/{lot_code:path}/history",
    tags=["audit"],
    responses=legacy_shapes.documented(200, history_shapes.HistoryBody, 401, 403, 404, 422),
)
async def lot_history(
    lot_code: str,
    _: Auditor,
    container: ContainerDep,
    as_of: Annotated[
        Instant, Query(description="Only events recorded at or before this instant")
    ] = None,
) -> LegacyJSONResponse:
    if "\x00" in lot_code:  # no lot can have it, and PostgreSQL refuses it in a query
        raise HTTPException(404, "Lot not found")
    history = await run_in_threadpool(container.ledger.lot_history, lot_code, as_of)
    return LegacyJSONResponse(history_shapes.history(history))
