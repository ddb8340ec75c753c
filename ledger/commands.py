"""What callers ask the ledger to record, and what it answers once it is committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, TypeVar
from uuid import UUID

T = TypeVar("T")


@dataclass(frozen=True)
class InputRef:
    """A parent lot, by id or by code, and how many kg of it went into the new lot."""

    quantity_used_kg: Decimal
    lot_id: UUID | None = None
    lot_code: str | None = None

    @property
    def reference(self) -> str:
        return self.lot_code if self.lot_code is not None else str(self.lot_id)


@dataclass(frozen=True)
class NewLot:
    lot_code: str
    lot_type: str | None = None
    production_run_id: UUID | None = None
    phase_id: UUID | None = None
    operator_id: UUID | None = None
    weight_kg: Decimal | None = None
    temperature_c: Decimal | None = None
    metadata_json: str = "{}"
    inputs: tuple[InputRef, ...] = ()
    # Only seed data brings its own ids; new lots get random UUIDs.
    lot_id: UUID | None = None


@dataclass(frozen=True)
class NewQcDecision:
    lot_id: UUID
    decision: str
    qc_gate_id: UUID | None = None
    operator_id: UUID | None = None
    notes: str | None = None
    temperature_c: Decimal | None = None
    digital_signature: str | None = None


@dataclass(frozen=True)
class Committed(Generic[T]):
    """An aggregate as saved, and the log position of the last event written for it."""

    aggregate: T
    position: int
    extra: dict = field(default_factory=dict)
