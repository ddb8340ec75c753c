from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import legacy_shapes
from api.dependencies import ContainerDep
from api.responses import LegacyJSONResponse

router = APIRouter()


@router.get(
    "/api/health",
    tags=["health"],
    responses=legacy_shapes.documented(200, legacy_shapes.HealthBody),
)
async def health() -> LegacyJSONResponse:
    return LegacyJSONResponse(legacy_shapes.health(datetime.now(UTC)))


@router.get("/metrics", tags=["health"], include_in_schema=False)
def metrics(container: ContainerDep) -> Response:
    container.metrics.record_projection(
        container.read_model.projection_status(container.events_table)
    )
    return Response(container.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
