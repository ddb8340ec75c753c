"""How each ledger event changes the read tables.

Every statement is idempotent: inserts ignore rows already there, and updates of a
lot or user apply only when the event is newer than the version the row has seen.
So an event applied twice changes nothing, tracking or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID, uuid5

import orjson

from ledger.lot import Lot
from ledger.user import User


class Op(NamedTuple):
    sql: str
    params: tuple[Any, ...]


# Renders a registered lot as the API's lot row (JSON text). The API owns that shape and
# hands the renderer to the projector, so the read side never defines a response itself.
RenderLot = Callable[[Lot.Registered], str]


# Inserts are declared with their columns' types: one row per event as a statement,
# and a whole batch's rows of a table as one INSERT ... SELECT FROM json_to_recordset.
class BulkInsert(NamedTuple):
    sql: str
    columns: tuple[str, ...]


BULK_INSERTS: dict[str, BulkInsert] = {}


def _exact(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # its digits and scale, as numeric's input reads them back
    raise TypeError(f"no JSON form for a {type(value).__name__} in a read-table row")


def rows_as_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The rows of one bulk insert, as `json_to_recordset` reads them."""
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    return orjson.dumps(records, default=_exact).decode()


def _insert(table: str, conflict: str, columns: str) -> str:
    names, types = zip(*(c.split(":") for c in columns.split()), strict=True)
    cols, target = ", ".join(names), f"ON CONFLICT ({conflict}) DO NOTHING"
    one = ", ".join(f"%s::{t}" for t in types)
    sql = f"INSERT INTO {table} ({cols}) VALUES ({one}) {target}"
    # A batch's rows go as one JSON document, written by orjson in C: psycopg's binary
    # array dumpers walked every value of every column in Python. Each value reaches its
    # column through the column type's own input function, as a one-row insert's text
    # parameter does; a jsonb column's value is JSON text, so it is read as text and cast.
    typed = list(zip(names, types, strict=True))
    record = ", ".join(f"{n} {'text' if t == 'jsonb' else t}" for n, t in typed)
    values = ", ".join(f"{n}::jsonb" if t == "jsonb" else n for n, t in typed)
    BULK_INSERTS[sql] = BulkInsert(
        f"INSERT INTO {table} ({cols}) SELECT {values}"
        f" FROM json_to_recordset(%s::json) AS r({record}) {target}",
        names,
    )
    return sql


INSERT_LOT = _insert(
    "lots", "id",
    "id:uuid lot_code:text lot_type:text production_run_id:uuid phase_id:uuid"
    " operator_id:uuid weight_kg:numeric temperature_c:numeric metadata:jsonb"
    " created_at:timestamptz",
)
INSERT_LOT_JSON = _insert("lot_json", "lot_id", "lot_id:uuid lot_code:text body:text")
INSERT_LOT_STATE = _insert("lot_state", "lot_id", "lot_id:uuid version:bigint")
INSERT_GENEALOGY = _insert(
    "lot_genealogy", "id",
    "id:uuid parent_lot_id:uuid child_lot_id:uuid quantity_used_kg:numeric"
    " linked_at:timestamptz",
)
INSERT_EDGE = _insert(
    "lot_edges", "child_lot_id, ordinal",
    "child_lot_id:uuid ordinal:int parent_lot_id:uuid quantity_used_kg:numeric"
    " linked_at:timestamptz",
)
INSERT_QC_DECISION = _insert(
    "qc_decisions", "id",
    "id:uuid lot_id:uuid qc_gate_id:uuid operator_id:uuid decision:text notes:text"
    " temperature_c:numeric digital_signature:text decided_at:timestamptz",
)
INSERT_USER = _insert(
    "users", "id", "id:uuid email:text full_name:text role:text created_at:timestamptz"
)
INSERT_USER_STATE = _insert("user_state", "user_id", "user_id:uuid version:bigint active:bool")

ADD_CONSUMED = (
    "UPDATE lot_state SET consumed_kg = consumed_kg + %s, version = %s"
    " WHERE lot_id = %s AND version < %s"
)
SET_QC_STATUS = (
    "UPDATE lot_state SET qc_status = %s, qc_decided_at = %s, version = %s"
    " WHERE lot_id = %s AND version < %s"
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
    yield Op(INSERT_USER_STATE, (e.originator_id, e.originator_version, True))


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


def handles(event_type: type) -> bool:
    return event_type in HANDLERS


def ops_for(event: object, render_lot: RenderLot) -> Iterable[Op]:
    """The statements for one event; events the read side has no use for give none."""
    handler = HANDLERS.get(type(event))
    return handler(event, render_lot) if handler is not None else ()
