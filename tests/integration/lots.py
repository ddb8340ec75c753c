"""Registering lots in integration tests: by code, weight and (parent code, kg) inputs."""

from __future__ import annotations

from decimal import Decimal

from ledger.commands import Committed, InputRef, NewLot
from ledger.lot import Lot
from ledger.values import SYSTEM_ACTOR_ID


def register(
    ledger,
    code: str,
    lot_type: str,
    weight: str | None,
    *inputs: tuple[str, str],
    metadata_json: str = "{}",
) -> Committed[Lot]:
    new = NewLot(
        lot_code=code,
        lot_type=lot_type,
        weight_kg=None if weight is None else Decimal(weight),
        metadata_json=metadata_json,
        inputs=tuple(InputRef(Decimal(kg), lot_code=parent) for parent, kg in inputs),
    )
    return ledger.register_lot(new, actor_id=SYSTEM_ACTOR_ID)
