"""Every response body the legacy clients read, key by key in the legacy order.

Clients diff these as text: the key order, decimals as strings keeping their scale,
and timestamps in UTC with milliseconds and `Z` are part of the contract. Both the
read tables and the events themselves are turned into bodies here, so the two paths
give identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ledger.lot import Lot
from ledger.user import User

LOT_KEYS = (
    "id", "lot_code", "lot_type", "production_run_id", "phase_id", "operator_id",
    "weight_kg", "temperature_c", "metadata", "created_at",
)
QC_KEYS = (
    "id", "lot_id", "qc_gate_id", "operator_id", "decision", "notes", "temperature_c",
    "digital_signature", "decided_at",
)
USER_KEYS = ("id", "email", "full_name", "role", "created_at", "last_login")


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    # isoformat's milliseconds truncate, as the legacy server's Date.toISOString did;
    # strftime took twice as long, and every lot row and answer has a timestamp.
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def decimal(value: Decimal | None) -> str | None:
    # Fixed-point as PostgreSQL prints numeric: 100.5, 4.0, 0.0000001, never 1E-7.
    return None if value is None else format(value, "f")


def uuid(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def lot(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": uuid(row["id"]),
        "lot_code": row["lot_code"],
        "lot_type": _text(row["lot_type"]),
        "production_run_id": uuid(row["production_run_id"]),
        "phase_id": uuid(row["phase_id"]),
        "operator_id": uuid(row["operator_id"]),
        "weight_kg": decimal(row["weight_kg"]),
        "temperature_c": decimal(row["temperature_c"]),
        "metadata": _metadata_numbers(row["metadata"]),
        "created_at": timestamp(row["created_at"]),
    }


def _metadata_numbers(value: Any) -> Any:
    """Metadata numbers as jsonb prints them, whichever path the body was built from.

    jsonb keeps 1e+20 as the digits 100000000000000000000 (read back as an int that
    orjson cannot encode past 64 bits); the event still holds the float.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e16:
        value = int(Decimal(repr(value)))
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {k: _metadata_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_metadata_numbers(v) for v in value]
    return value


def lot_from_registration(event: Lot.Registered) -> dict[str, Any]:
    """A lot row, from the event that registered the lot (a lot row never changes)."""
    return lot(
        {
            "id": event.originator_id,
            "lot_code": event.lot_code,
            "lot_type": event.lot_type,
            "production_run_id": event.production_run_id,
            "phase_id": event.phase_id,
            "operator_id": event.operator_id,
            "weight_kg": event.weight_kg,
            "temperature_c": event.temperature_c,
            "metadata": _metadata(event.metadata_json),
            "created_at": event.timestamp,
        }
    )


def lot_json_from_registration(event: Lot.Registered) -> str:
    """The lot row as JSON text, rendered once by the projector for traceability bodies."""
    return orjson.dumps(lot_from_registration(event)).decode()


def _metadata(metadata_json: str) -> Any:
    # Most lots have none: "{}" is skipped rather than parsed, for every answer and row.
    return {} if metadata_json == "{}" else jsonb_order(json.loads(metadata_json))


def qc_decision(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": uuid(row["id"]),
        "lot_id": uuid(row["lot_id"]),
        "qc_gate_id": uuid(row["qc_gate_id"]),
        "operator_id": uuid(row["operator_id"]),
        "decision": _text(row["decision"]),
        "notes": row["notes"],
        "temperature_c": decimal(row["temperature_c"]),
        "digital_signature": row["digital_signature"],
        "decided_at": timestamp(row["decided_at"]),
    }


def qc_decision_from_event(event: Lot.QcDecisionRecorded) -> dict[str, Any]:
    return qc_decision(
        {
            "id": event.decision_id,
            "lot_id": event.originator_id,
            "qc_gate_id": event.qc_gate_id,
            "operator_id": event.operator_id,
            "decision": event.decision,
            "notes": event.notes,
            "temperature_c": event.temperature_c,
            "digital_signature": event.digital_signature,
            "decided_at": event.timestamp,
        }
    )


def user(aggregate: User, *, last_login: datetime | None) -> dict[str, Any]:
    return {
        "id": uuid(aggregate.id),
        "email": aggregate.email,
        "full_name": aggregate.full_name,
        "role": aggregate.role,
        "created_at": timestamp(aggregate.created_on),
        "last_login": timestamp(last_login),
    }


def login(user_body: dict[str, Any], token: str) -> dict[str, Any]:
    return {"user": user_body, "token": token}


def traceability(central: str, parents: str, children: str) -> bytes:
    """From lot rows already rendered as JSON text (lists comma-joined), no re-encoding."""
    return f'{{"central":{central},"parents":[{parents}],"children":[{children}]}}'.encode()


def health(now: datetime) -> dict[str, Any]:
    return {"status": "ok", "timestamp": timestamp(now)}


def error(message: str) -> dict[str, Any]:
    return {"detail": message, "error": message}


def validation_error(errors: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {"detail": errors, "error": summary}


def jsonb_order(value: Any) -> Any:
    """Orders object keys as PostgreSQL's jsonb does (shorter first, then bytewise)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [jsonb_order(v) for v in value]
    return value


# --- the same shapes, described for the OpenAPI document ---------------------------------
# Bodies are built by the functions above; these models only tell /docs what they hold.




class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LotRow(_Doc):
    id: str = Field(examples=["4d0f44e9-e0f5-41b2-9cfa-add9d297eb6a"])
    lot_code: str = Field(examples=["T-1"])
    lot_type: str | None = Field(examples=["RAW"])
    production_run_id: str | None
    phase_id: str | None
    operator_id: str | None
    weight_kg: str | None = Field(description="decimal as given", examples=["100.5"])
    temperature_c: str | None = Field(description="decimal as given", examples=["4"])
    metadata: dict[str, Any]
    created_at: str = Field(examples=["2026-11-26T11:48:50.199Z"])


class QcDecisionRow(_Doc):
    id: str
    lot_id: str
    qc_gate_id: str | None
    operator_id: str | None
    decision: str = Field(examples=["PASS"])
    notes: str | None
    temperature_c: str | None = Field(examples=["4.5"])
    digital_signature: str | None
    decided_at: str = Field(examples=["2026-11-26T11:48:50.213Z"])


class UserRow(_Doc):
    id: str
    email: str
    full_name: str | None
    role: str = Field(examples=["ADMIN"])
    created_at: str
    last_login: str | None = Field(description="the previous successful login")


class LoginBody(_Doc):
    user: UserRow
    token: str


class TraceabilityBody(_Doc):
    central: LotRow
    parents: list[LotRow]
    children: list[LotRow]


class HealthBody(_Doc):
    status: str = Field(examples=["ok"])
    timestamp: str


class ErrorBody(_Doc):
    detail: str | list[dict[str, Any]]
    error: str


def documented(status: int, model: type[BaseModel], *errors: int) -> dict[int | str, Any]:
    """`responses=` for a route: its body model and the error codes it may answer."""
    return {status: {"model": model}, **{code: {"model": ErrorBody} for code in errors}}
