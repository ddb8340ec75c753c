"""Audit: a lot's history as recorded, and proof that nobody rewrote the log."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from api import history_shapes, legacy_shapes
from api.dependencies import AUDIT_ROLES, Auditor, ContainerDep, CurrentPrincipal
from api.query_params import Instant
from api.responses import LegacyJSONResponse
from api.routes import lot_browser
from ledger.hash_chain import Digest

router = APIRouter()
# A verification reads the whole log: one at a time per process is plenty.
_verifying = threading.Lock()


@router.get(
    "/api/lots/{lot_code:path}/history",
    tags=["audit"],
    responses=legacy_shapes.documented(200, history_shapes.HistoryBody, 401, 403, 404, 422),
)
async def lot_history(
    lot_code: str,
    request: Request,
    principal: CurrentPrincipal,
    container: ContainerDep,
    as_of: Annotated[
        Instant, Query(description="Only events recorded at or before this instant")
    ] = None,
) -> LegacyJSONResponse:
    raw_path = request.scope.get("raw_path")
    if raw_path is not None and not raw_path.endswith(b"/history"):
        # `/api/lots/X%2Fhistory` asks for the lot coded "X/history", not X's history.
        return await lot_browser.lot_detail(f"{lot_code}/history", principal, container)
    if principal.role not in AUDIT_ROLES:  # checked here, after the case above
        raise HTTPException(403, "Insufficient permissions")
    history = await run_in_threadpool(container.ledger.lot_history, lot_code, as_of)
    return LegacyJSONResponse(history_shapes.history(history))


@router.get(
    "/api/ledger/digest",
    tags=["audit"],
    responses=legacy_shapes.documented(200, history_shapes.DigestBody, 401, 403),
)
async def ledger_digest(_: Auditor, container: ContainerDep) -> LegacyJSONResponse:
    """A digest of the whole log: keep it outside the system, verify against it later."""
    digest = await run_in_threadpool(container.ledger.digest)
    return LegacyJSONResponse(history_shapes.digest(digest))


@router.get(
    "/api/ledger/verify",
    tags=["audit"],
    responses=legacy_shapes.documented(
        200, history_shapes.VerificationBody, 401, 403, 422, 429
    ),
)
async def ledger_verify(
    _: Auditor,
    container: ContainerDep,
    digest: Annotated[
        str | None, Query(description="A digest from /api/ledger/digest or `ledger digest`")
    ] = None,
) -> LegacyJSONResponse:
    """Recomputes every hash chain (and checks the log still leads to the digest), and
    compares every snapshot with a replay of its events."""
    try:
        against = Digest.parse(digest) if digest is not None else None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    if not _verifying.acquire(blocking=False):
        raise HTTPException(429, "A verification is already running; try again when it ends")
    try:
        result = await run_in_threadpool(container.ledger.verify, against)
    finally:
        _verifying.release()
    return LegacyJSONResponse(history_shapes.verification(result))
