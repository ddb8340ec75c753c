"""Every failure becomes a 4xx/5xx body with `detail` and `error`; no traces, no SQL."""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.persistence import OperationalError as StoreOperationalError
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from psycopg import OperationalError as PgOperationalError
from psycopg_pool import PoolTimeout
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


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    return LegacyJSONResponse(legacy_shapes.error(message), status_code=status, headers=headers)


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
            {k: v for k, v in e.items() if k != "url"} for e in jsonable_encoder(exc.errors())
        ]
        body = legacy_shapes.validation_error(errors, _summary(errors) if errors else "Invalid")
        return LegacyJSONResponse(body, status_code=422)

    @app.exception_handler(ledger_errors.LedgerError)
    async def ledger_error(_: Request, exc: ledger_errors.LedgerError):
        return error_response(LEDGER_STATUS.get(type(exc), 409), str(exc))

    async def unavailable(_: Request, exc: Exception):
        log.warning("database unavailable: %s", exc)
        return error_response(503, "Service temporarily unavailable", {"Retry-After": "1"})

    for kind in (PoolTimeout, PgOperationalError, StoreOperationalError):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "Internal server error")
