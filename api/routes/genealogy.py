"""Deep genealogy for every role; recalls and source investigations for those who run them."""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from api import audit_shapes, legacy_shapes
from api.dependencies import Auditor, ContainerDep, CurrentPrincipal
from api.query_params import Instant
from api.responses import LegacyJSONResponse
from api.routes import lots
from projections import genealogy
from projections.genealogy import DEFAULT_MAX_DEPTH, MAX_DEPTH

router = APIRouter()

class GraphDirection(StrEnum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"


class RecallDirection(StrEnum):
    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


def _suffix_was_encoded(request: Request) -> bool:
    """`/api/traceability/X%2Fgraph` asks the legacy route for the lot "X/graph": the
    decoded path matches this route, only the raw path tells them apart."""
    raw = request.scope.get("raw_path")
    return raw is not None and not raw.endswith(b"/graph")


# Declared before the legacy `/api/traceability/{lot_code:path}`, which would match too.
@router.get(
    "/api/traceability/{lot_code:path}/graph",
    tags=["traceability"],
    responses=legacy_shapes.documented(200, audit_shapes.GraphBody, 401, 404, 422),
)
async def graph(  # noqa: PLR0913 - one parameter per query option
    lot_code: str,
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    direction: GraphDirection = GraphDirection.BOTH,
    max_depth: Annotated[int, Query(ge=1, le=MAX_DEPTH)] = DEFAULT_MAX_DEPTH,
    as_of: Annotated[Instant, Query(description="ISO 8601 with a timezone")] = None,
) -> Response:
    if _suffix_was_encoded(request):
        return await lots.traceability(f"{lot_code}/graph", principal, container)
    pool = container.read_model.require_async_pool()
    g = await genealogy.genealogy(
        pool, lot_code, direction=direction.value, max_depth=max_depth, as_of=as_of
    )
    if g is None:
        if not request.query_params:
            # Before this route, /api/traceability/X/graph traced a lot coded "X/graph".
            return await lots.traceability(f"{lot_code}/graph", principal, container)
        raise HTTPException(404, "Lot not found")
    if as_of is not None and g.root.lot["created_at"] > as_of:
        raise HTTPException(404, "Lot did not exist at as_of")
    return LegacyJSONResponse(audit_shapes.graph(g))


@router.get(
    "/api/recall/{lot_code:path}",
    tags=["traceability"],
    responses=legacy_shapes.documented(200, audit_shapes.RecallBody, 401, 403, 404, 422),
    response_description="JSON; with format=csv a text/csv attachment",
)
async def recall(
    lot_code: str,
    _: Auditor,
    container: ContainerDep,
    direction: RecallDirection = RecallDirection.DOWNSTREAM,
    fmt: Annotated[Format, Query(alias="format")] = Format.JSON,
) -> Response:
    """Downstream: every lot the suspect lot went into, with the kg of it each contains.
    Upstream: every input of the lot back to raw lots, with the kg of each in it."""
    started = time.perf_counter()
    g = await genealogy.genealogy(
        container.read_model.require_async_pool(), lot_code, direction=direction.value,
        max_depth=MAX_DEPTH, with_inputs=fmt is Format.CSV,
    )
    if g is None:
        raise HTTPException(404, "Lot not found")
    if direction is RecallDirection.DOWNSTREAM:
        traced = genealogy.recall(g)
        elapsed = (time.perf_counter() - started) * 1000
        body, kg_column = audit_shapes.recall(traced, elapsed), "suspect_kg"
        name = f"recall-{lot_code}"
    else:
        traced = genealogy.source_trace(g)
        elapsed = (time.perf_counter() - started) * 1000
        body, kg_column = audit_shapes.source_trace(traced, elapsed), "kg_in_root"
        name = f"recall-{lot_code}-upstream"
    if fmt is Format.JSON:
        return LegacyJSONResponse(body)
    rows = audit_shapes.csv_rows([traced.root, *traced.lots], g.inputs, kg_column)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)  # a header value, from user text
    return Response(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}.csv"'},
    )
