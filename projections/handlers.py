"""How each ledger event changes the read tables.

Every statement is idempotent: inserts ignore rows already there, and updates of a
lot or user apply only when the event is newer than the version the row has seen.
So an event applied twice changes nothing, tracking or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from ledger.lot import Lot
from ledger.user import User


class Op(NamedTuple):
    sql: str
    params: tuple[Any, ...]


# Renders a registered lot as the API's lot row (JSON text). The API owns that shape and
# hands the renderer to the projector, so the read side never defines a response itself.
RenderLot = Callable[[Lot.Registered], str]


INSERT_LOT = (
    "INSERT INTO lots (id, lot_code, lot_type, production_run_id, phase_id, operator_id,"
    " weight_kg, temperature_c, metadata, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT (id) DO NOTHING"
)
INSERT_LOT_JSON = (
    "INSERT INTO lot_json (lot_id, lot_code, body) VALUES (%s, %s, %s)"
    " ON CONFLICT (lot_id) DO NOTHING"
)
INSERT_LOT_STATE = (
    "INSERT INTO lot_state (lot_id, version, consumed_kg) VALUES (%s, %s, 0)"
    " ON CONFLICT (lot_id) DO NOTHING"
)
INSERT_GENEALOGY = (
    "INSERT INTO lot_genealogy (id, parent_lot_id, child_lot_id, quantity_used_kg, linked_at)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
)
INSERT_EDGE = (
    "INSERT INTO lot_edges (child_lot_id, ordinal, parent_lot_id, quantity_used_kg, linked_at)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (child_lot_id, ordinal) DO NOTHING"
)
ADD_CONSUMED = (
    "UPDATE lot_state SET consumed_kg = consumed_kg + %s, version = %s"
    " WHERE lot_id = %s AND version < %s"
)
INSERT_QC_DECISION = (
    "INSERT INTO qc_decisions (id, lot_id, qc_gate_id, operator_id, decision, notes,"
    " temperature_c, digital_signature, decided_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
)
SET_QC_STATUS = (
    "UPDATE lot_state SET qc_status = %s, qc_decided_at = %s, version = %s"
    " WHERE lot_id = %s AND version < %s"
)
INSERT_USER = (
    "INSERT INTO users (id, email, full_name, role, created_at, last_login)"
    " VALUES (%s, %s, %s, %s, %s, NULL) ON CONFLICT (id) DO NOTHING"
)
INSERT_USER_STATE = (
    "INSERT INTO user_state (user_id, version, active) VALUES (%s, %s, true)"
    " ON CONFLICT (user_id) DO NOTHING"
)
SET_USER_ROLE = (
    "UPDATE users u SET role = %s FROM user_state s"
    " WHERE u.id = s.user_id AND s.user_id = %s AND s.version < %s"
)
SET_USER_LAST_LOGIN = (
    "UPDATE users u SET last_login = %s FROM user_state s"
    " WHERE u.id = s.user_id AND s.user_id = %s AND s.version < %s"
)
BUMP_USER_VERSION = (
    "UPDATE user_state SET version = %s WHERE user_id = %s AND version < %s"
)
DEACTIVATE_USER = (
    "UPDATE user_state SET active = false, version = %s WHERE user_id = %s AND version < %s"
)


def genealogy_id(child_lot_id: UUID, ordinal: int) -> UUID:
    """Stable per link, so re-applying a registration inserts nothing new."""
    return uuid5(child_lot_id, f"input:{ordinal}")


def lot_registered(e: Lot.Registered, render_lot: RenderLot) -> Iterable[Op]:
    lot_id, at = e.originator_id, e.timestamp
    yield Op(
        INSERT_LOT,
        (lot_id, e.lot_code, e.lot_type, e.production_run_id, e.phase_id, e.operator_id,
         e.weight_kg, e.temperature_c, e.metadata_json, at),
    )
    yield Op(INSERT_LOT_JSON, (lot_id, e.lot_code, render_lot(e)))
    yield Op(INSERT_LOT_STATE, (lot_id, e.originator_version))
    for ordinal, link in enumerate(e.inputs):
        parent, kg = link["lot_id"], link["quantity_used_kg"]
        yield Op(INSERT_GENEALOGY, (genealogy_id(lot_id, ordinal), parent, lot_id, kg, at))
        yield Op(INSERT_EDGE, (lot_id, ordinal, parent, kg, at))


def lot_consumed(e: Lot.Consumed, _: RenderLot) -> Iterable[Op]:
    v = e.originator_version
    yield Op(ADD_CONSUMED, (e.quantity_kg, v, e.originator_id, v))


def qc_decision_recorded(e: Lot.QcDecisionRecorded, _: RenderLot) -> Iterable[Op]:
    v = e.originator_version
    yield Op(
        INSERT_QC_DECISION,
        (e.decision_id, e.originator_id, e.qc_gate_id, e.operator_id, e.decision, e.notes,
         e.temperature_c, e.digital_signature, e.timestamp),
    )
    yield Op(SET_QC_STATUS, (e.decision, e.timestamp, v, e.originator_id, v))


def user_registered(e: User.Registered, _: RenderLot) -> Iterable[Op]:
    yield Op(INSERT_USER, (e.originator_id, e.email, e.full_name, e.role, e.timestamp))
    yield Op(INSERT_USER_STATE, (e.originator_id, e.originator_version))


def user_role_changed(e: User.RoleChanged, _: RenderLot) -> Iterable[Op]:
    v = e.originator_version
    yield Op(SET_USER_ROLE, (e.role, e.originator_id, v))
    yield Op(BUMP_USER_VERSION, (v, e.originator_id, v))


def user_logged_in(e: User.LoggedIn, _: RenderLot) -> Iterable[Op]:
    v = e.originator_version
    yield Op(SET_USER_LAST_LOGIN, (e.timestamp, e.originator_id, v))
    yield Op(BUMP_USER_VERSION, (v, e.originator_id, v))


def user_password_changed(e: User.PasswordChanged, _: RenderLot) -> Iterable[Op]:
    v = e.originator_version
    yield Op(BUMP_USER_VERSION, (v, e.originator_id, v))


def user_deactivated(e: User.Deactivated, _: RenderLot) -> Iterable[Op]:
    v = e.originator_version
    yield Op(DEACTIVATE_USER, (v, e.originator_id, v))


HANDLERS: dict[type, Callable[[Any, RenderLot], Iterable[Op]]] = {
    Lot.Registered: lot_registered,
    Lot.Consumed: lot_consumed,
    Lot.QcDecisionRecorded: qc_decision_recorded,
    User.Registered: user_registered,
    User.RoleChanged: user_role_changed,
    User.LoggedIn: user_logged_in,
    User.PasswordChanged: user_password_changed,
    User.Deactivated: user_deactivated,
}


def ops_for(event: object, render_lot: RenderLot) -> Iterable[Op]:
    """The statements for one event; events the read side has no use for give none."""
    handler = HANDLERS.get(type(event))
    return handler(event, render_lot) if handler is not None else ()
