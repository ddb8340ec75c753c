from __future__ import annotations

import json
import time

from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from api import legacy_shapes
from api.composition import Container
from api.dependencies import ContainerDep, CurrentPrincipal, Principal, Writer
from api.json_body import ExactJsonRoute, plain_json
from api.responses import LegacyJSONResponse
from api.schemas import LotIn, QcDecisionIn
from ledger.commands import Committed, InputRef, NewLot, NewQcDecision
from ledger.lot import Lot

router = APIRouter(route_class=ExactJsonRoute)
# Also answered by api/fast_trace.py in the common case: keep the two in step.
TRACEABILITY_PATH = "/api/traceability/{lot_code:path}"


@router.post(
    "/api/lots",
    status_code=201,
    tags=["lots"],
    responses=legacy_shapes.documented(201, legacy_shapes.LotRow, 401, 403, 404, 409, 422),
)
async def create_lot(
    body: LotIn, principal: Writer, container: ContainerDep
) -> LegacyJSONResponse:
    committed = await container.ledger.register_lot_async(
        new_lot(body, principal), actor_id=principal.user_id, run_blocking=run_in_threadpool
    )
    return await created_lot(container, committed)


# Both also serve api/fast_post_lots.py, which answers the plain case in front of FastAPI.
def new_lot(body: LotIn, principal: Principal) -> NewLot:
    return NewLot(
        lot_code=body.lot_code,
        lot_type=body.lot_type.value if body.lot_type else None,
        production_run_id=body.production_run_id,
        phase_id=body.phase_id,
        operator_id=body.operator_id or principal.user_id,
        weight_kg=body.weight_kg,
        temperature_c=body.temperature_c,
        # Most lots come without metadata: "{}" is what dumping an empty one gives.
        metadata_json=(
            json.dumps(plain_json(body.metadata), ensure_ascii=False) if body.metadata else "{}"
        ),
        inputs=tuple(
            InputRef(quantity_used_kg=i.quantity_used_kg, lot_id=i.lot_id, lot_code=i.lot_code)
            for i in body.inputs
        ),
    )


async def created_lot(container: Container, committed: Committed[Lot]) -> LegacyJSONResponse:
    # Read-your-writes: the 201 waits until the read tables hold the lot, so the client's
    # next request finds it. The body needs no read-back: the row and this answer are
    # rendered from the same event (test_read_your_writes pins them byte for byte).
    await container.watermark.wait_for_async(
        committed.position, container.settings.flowviz_read_your_writes_timeout
    )
    # From the registration event, which every registration's commit carries: a raw lot's
    # aggregate is then never built.
    return LegacyJSONResponse(
        legacy_shapes.lot_from_registration(committed.extra["event"]), status_code=201
    )


@router.post(
    "/api/qc-decisions",
    status_code=201,
    tags=["qc"],
    responses=legacy_shapes.documented(201, legacy_shapes.QcDecisionRow, 401, 403, 404, 422),
)
async def create_qc_decision(
    body: QcDecisionIn, principal: Writer, container: ContainerDep
) -> LegacyJSONResponse:
    new = NewQcDecision(
        lot_id=body.lot_id,
        decision=body.decision.value,
        qc_gate_id=body.qc_gate_id,
        operator_id=body.operator_id or principal.user_id,
        notes=body.notes,
        temperature_c=body.temperature_c,
        digital_signature=body.digital_signature,
    )
    committed = await run_in_threadpool(
        container.ledger.record_qc_decision, new, actor_id=principal.user_id
    )
    decision_id = committed.extra["decision_id"]
    if await container.watermark.wait_for_async(
        committed.position, container.settings.flowviz_read_your_writes_timeout
    ):
        row = await container.read_model.qc_decision_async(decision_id)
        if row is not None:
            return LegacyJSONResponse(legacy_shapes.qc_decision(row), status_code=201)
    event = committed.extra["event"]
    return LegacyJSONResponse(legacy_shapes.qc_decision_from_event(event), status_code=201)


@router.get(
    TRACEABILITY_PATH,
    tags=["traceability"],
    responses=legacy_shapes.documented(200, legacy_shapes.TraceabilityBody, 401, 404),
)
async def traceability(
    lot_code: str, _: CurrentPrincipal, container: ContainerDep
) -> Response:
    started = time.perf_counter()
    trace = await container.read_model.traceability(lot_code)
    container.metrics.traceability_seconds_now.observe(time.perf_counter() - started)
    if trace is None:
        raise HTTPException(404, "Lot not found")
    body = legacy_shapes.traceability(trace.central, trace.parents, trace.children)
    return Response(body, media_type=LegacyJSONResponse.media_type)
