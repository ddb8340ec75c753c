"""The legacy seed (two raw lots -> one mix -> one finished good), written through the ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from uuid import UUID

from ledger.application import Ledger
from ledger.commands import InputRef, NewLot
from ledger.user import UserEmail


def demo_data() -> dict:
    return json.loads(resources.files("api").joinpath("demo_data.json").read_text())


def load_demo(ledger: Ledger) -> bool:
    """Loads the seed once; returns False when it was there already."""
    data = demo_data()
    first_user = data["users"][0]
    if UserEmail.id_for(first_user["email"]) in ledger.repository:
        return False
    actor = UUID(first_user["id"])
    for user in data["users"]:
        ledger.register_user(
            user_id=UUID(user["id"]),
            email=user["email"],
            full_name=user.get("full_name"),
            role=user["role"],
            password_hash=None,
            actor_id=actor,
        )
    for lot in data["lots"]:
        ledger.register_lot(
            NewLot(
                lot_id=UUID(lot["id"]),
                lot_code=lot["lot_code"],
                lot_type=lot.get("lot_type"),
                weight_kg=Decimal(lot["weight_kg"]) if lot.get("weight_kg") else None,
                inputs=tuple(
                    InputRef(
                        quantity_used_kg=Decimal(i["quantity_used_kg"]), lot_code=i["lot_code"]
                    )
                    for i in lot.get("inputs", ())
                ),
            ),
            actor_id=actor,
        )
    return True
