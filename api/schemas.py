"""Request bodies. Unknown fields are refused: the legacy server built SQL from key names."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ledger.values import (
    BLOCKING_DECISIONS,
    MIN_NOTES_FOR_BLOCKING_DECISION,
    LotType,
    QcDecision,
)


def _canonical(value: Decimal) -> Decimal:
    # 1e2 is stored and shown as 100, like PostgreSQL's numeric; -0 as 0.
    value = Decimal(format(value, "f"))
    return value if value else abs(value)


def _bounded_decimal(low: int, high: int) -> Any:
    return Annotated[
        Decimal,
        Field(ge=low, le=high, allow_inf_nan=False, max_digits=24, decimal_places=12),
        AfterValidator(_canonical),
    ]


WeightKg = _bounded_decimal(0, 10000)
TemperatureC = _bounded_decimal(-50, 100)


def _printable_code(value: str) -> str:
    if not value.strip():
        raise ValueError("lot_code must not be blank")
    if not value.isprintable():
        raise ValueError("lot_code may contain printable characters only")
    return value


LotCode = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable_code)]

STRICT = ConfigDict(extra="forbid")


class InputIn(BaseModel):
    model_config = STRICT

    lot_code: LotCode | None = None
    lot_id: UUID | None = None
    quantity_used_kg: Annotated[
        Decimal,
        Field(gt=0, le=10000, allow_inf_nan=False, max_digits=24, decimal_places=12),
        AfterValidator(_canonical),
    ]

    @model_validator(mode="after")
    def _names_a_lot(self) -> InputIn:
        if self.lot_code is None and self.lot_id is None:
            raise ValueError("each input needs lot_code or lot_id")
        return self


def _finite_numbers(value: Any) -> Any:
    # NaN, Infinity or 1e400 would be recorded in the event but refused by jsonb, which
    # would stop the projector at that event for good.
    if isinstance(value, (Decimal, float)) and not math.isfinite(float(value)):
        raise ValueError("metadata numbers must be finite")
    if isinstance(value, dict):
        for item in value.values():
            _finite_numbers(item)
    elif isinstance(value, list):
        for item in value:
            _finite_numbers(item)
    return value


class LotIn(BaseModel):
    model_config = STRICT

    lot_code: LotCode
    lot_type: LotType | None = None
    production_run_id: UUID | None = None
    phase_id: UUID | None = None
    operator_id: UUID | None = None
    weight_kg: WeightKg | None = None
    temperature_c: TemperatureC | None = None
    metadata: Annotated[dict[str, Any], AfterValidator(_finite_numbers)] | None = None
    # A factory: a default list is deep-copied for every body without inputs.
    inputs: Annotated[list[InputIn], Field(max_length=200, default_factory=list)]


class QcDecisionIn(BaseModel):
    model_config = STRICT

    lot_id: UUID
    decision: QcDecision
    qc_gate_id: UUID | None = None
    operator_id: UUID | None = None
    notes: Annotated[str, Field(max_length=1000)] | None = None
    temperature_c: TemperatureC | None = None
    digital_signature: Annotated[str, Field(max_length=10000)] | None = None

    @model_validator(mode="after")
    def _blocking_decisions_say_why(self) -> QcDecisionIn:
        if self.decision in BLOCKING_DECISIONS and len((self.notes or "").strip()) < (
            MIN_NOTES_FOR_BLOCKING_DECISION
        ):
            raise ValueError(
                f"notes of at least {MIN_NOTES_FOR_BLOCKING_DECISION} characters are required"
                f" for {self.decision.value}"
            )
        return self


class LoginIn(BaseModel):
    # Older clients may send more than these; login ignores the rest rather than fail.
    model_config = ConfigDict(extra="ignore")

    email: Annotated[str, Field(min_length=3, max_length=320)]
    password: Annotated[str, Field(max_length=1024)] | None = None

    @field_validator("email")
    @classmethod
    def _looks_like_email(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("email must be an e-mail address")
        return value.strip()
