"""Browsing lots: a filtered list, newest first, page by page; and one lot in detail."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import AfterValidator

from api import browse_shapes, legacy_shapes
from api.dependencies import ContainerDep, CurrentPrincipal
from api.query_params import Instant
from api.responses import LegacyJSONResponse
from ledger.values import LotType
from projections import lot_browser
from projections.lot_browser import LotFilter

router = APIRouter()

MAX_LIMIT = 500
class QcStatusFilter(StrEnum):
    PASS = "PASS"
    HOLD = "HOLD"
    FAIL = "FAIL"
    NONE = "NONE"


def _cursor(value: str) -> str:
    try:
        browse_shapes.decode_cursor(value)
    except ValueError:
        raise ValueError("invalid cursor: pass back a next_cursor as given") from None
    return value


def _text(value: str) -> str:
    if "\x00" in value:  # PostgreSQL refuses it in a query, and no lot code has it
        raise ValueError("must not contain NUL")
    return value


@router.get(
    "/api/lots",
    tags=["lots"],
    responses=legacy_shapes.documented(200, browse_shapes.LotListBody, 401, 422),
)
async def list_lots(  # noqa: PLR0913 - one parameter per filter
    _: CurrentPrincipal,
    container: ContainerDep,
    lot_type: LotType | None = None,
    qc_status: Annotated[
        QcStatusFilter | None, Query(description="NONE: no decision yet")
    ] = None,
    created_from: Annotated[Instant, Query(description="inclusive")] = None,
    created_to: Annotated[Instant, Query(description="exclusive")] = None,
    code_prefix: Annotated[
        str | None, Query(max_length=100, description="taken literally: % and _ are no wildcards"),
        AfterValidator(_text),
    ] = None,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page"),
        AfterValidator(_cursor),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> LegacyJSONResponse:
    filters = LotFilter(
        lot_type=lot_type.value if lot_type else None,
        qc_status=qc_status.value if qc_status else None,
        created_from=created_from,
        created_to=created_to,
        code_prefix=code_prefix,
    )
    after = browse_shapes.decode_cursor(cursor) if cursor else None
    rows, following = await lot_browser.lot_page(
        container.read_model.require_async_pool(), filters, limit=limit, after=after
    )
    next_cursor = browse_shapes.encode_cursor(following) if following else None
    return LegacyJSONResponse(browse_shapes.lot_list(rows, next_cursor))


# `:path` because lot codes may hold '/'; the history route is registered before this one.
@router.get(
    "/api/lots/{lot_code:path}",
    tags=["lots"],
    responses=legacy_shapes.documented(200, browse_shapes.LotDetailBody, 401, 404),
)
async def lot_detail(
    lot_code: str, _: CurrentPrincipal, container: ContainerDep
) -> LegacyJSONResponse:
    row = await lot_browser.lot_detail(container.read_model.require_async_pool(), lot_code)
    if row is None:
        raise HTTPException(404, "Lot not found")
    return LegacyJSONResponse(browse_shapes.lot_detail(row))

