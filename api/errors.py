"""Every failure becomes a 4xx/5xx body with `detail` and `error`; no traces, no SQL."""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import FastAPI, Request
from fastapi.encoders import decimal_encoder, jsonable_encoder
from fastapi.exceptions import RequestValidationError
from psycopg import OperationalError as PgOperationalError
from psycopg_pool import PoolTimeout
from redis import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import legacy_shapes
from api.responses import LegacyJSONResponse
from ledger import errors as ledger_errors

log = logging.getLogger(__name__)

# Broken invariants are conflicts with what the ledger holds; a request that is wrong
# in itself is unprocessable; a lot that does not exist is not found.
LEDGER_STATUS: dict[type[ledger_errors.LedgerError], int] = {
    ledger_errors.LotCodeAlreadyExists: 409,
    ledger_errors.LotNotConsumable: 409,
    ledger_errors.InsufficientQuantity: 409,
    ledger_errors.ConcurrencyConflict: 409,
    ledger_errors.EmailAlreadyRegistered: 409,
    ledger_errors.LotNotFound: 404,
    ledger_errors.UserNotFound: 404,
    ledger_errors.InvalidQuantity: 422,
    ledger_errors.SelfConsumption: 422,
    ledger_errors.DuplicateInput: 422,
    ledger_errors.NotesRequired: 422,
    ledger_errors.UserDeactivated: 401,
}

# A 422 keeps the validation list form in `detail` (contract), located at this body field.
LEDGER_422_FIELD: dict[type[ledger_errors.LedgerError], str] = {
    ledger_errors.InvalidQuantity: "inputs",
    ledger_errors.SelfConsumption: "inputs",
    ledger_errors.DuplicateInput: "inputs",
    ledger_errors.NotesRequired: "notes",
}


def _decimal_input(value: Decimal) -> int | float | str:
    # As FastAPI encodes a refused decimal, except where orjson cannot write the number
    # (a weight of 1e30 would otherwise turn its 422 into a 500).
    encoded = decimal_encoder(value)
    if isinstance(encoded, int) and not -(2**63) <= encoded < 2**64:
        return str(value)
    if isinstance(encoded, float) and not math.isfinite(encoded):
        return str(value)
    return encoded


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    return LegacyJSONResponse(legacy_shapes.error(message), status_code=status, headers=headers)


def unexpected_failure(exc: BaseException) -> LegacyJSONResponse:
    """The answer to a failure nobody foresaw: logged here, a plain 500 to the client."""
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "Internal server error")


def ledger_refusal(exc: ledger_errors.LedgerError) -> LegacyJSONResponse:
    """The answer to a refusal by the ledger, wherever the request was taken."""
    status = LEDGER_STATUS.get(type(exc), 409)
    if status == 422:
        field = LEDGER_422_FIELD.get(type(exc))
        loc = ["body", field] if field else ["body"]
        errors = [{"type": "value_error", "loc": loc, "msg": str(exc), "input": None}]
        return LegacyJSONResponse(
            legacy_shapes.validation_error(errors, _summary(errors)), status_code=422
        )
    return error_response(status, str(exc))


def _summary(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}" if where else str(first.get("msg"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        errors = [
            {k: v for k, v in e.items() if k != "url"}
            for e in jsonable_encoder(exc.errors(), custom_encoder={Decimal: _decimal_input})
        ]
        body = legacy_shapes.validation_error(errors, _summary(errors) if errors else "Invalid")
        return LegacyJSONResponse(body, status_code=422)

    @app.exception_handler(ledger_errors.LedgerError)
    async def ledger_error(_: Request, exc: ledger_errors.LedgerError):
        return ledger_refusal(exc)

    async def unavailable(_: Request, exc: Exception):
        log.warning("a backing service is unavailable: %s", exc)
        return error_response(503, "Service temporarily unavailable", {"Retry-After": "1"})

    for kind in (PoolTimeout, PgOperationalError, StoreOperationalError, RedisError):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        return unexpected_failure(exc)
