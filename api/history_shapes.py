"""Bodies of the audit endpoints: a lot's replayable history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from api.legacy_shapes import decimal, timestamp
from ledger.hash_chain import Digest, Verification
from ledger.history import HistoryEntry, LotHistory

HISTORY_EVENT_KEYS = ("version", "type", "recorded_at", "actor_id", "data", "hash", "prev_hash")


def history(lot: LotHistory) -> dict[str, Any]:
    return {"lot_code": lot.lot_code, "events": [history_event(e) for e in lot.entries]}


def history_event(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "version": entry.version,
        "type": entry.type,
        "recorded_at": timestamp(entry.recorded_at),
        "actor_id": _value(entry.actor_id),
        "data": _value(entry.data),
        "hash": entry.hash.hex() if entry.hash is not None else None,
        "prev_hash": entry.prev_hash.hex() if entry.prev_hash is not None else None,
    }


def _value(value: Any) -> Any:
    # As recorded: decimals keep their scale as strings, like every other body here.
    if isinstance(value, Decimal):
        return decimal(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return value


def digest(value: Digest) -> dict[str, Any]:
    return {"digest": str(value), "position": value.position}


def verification(result: Verification) -> dict[str, Any]:
    return {
        "intact": result.intact,
        "events": result.events,
        "streams": result.streams,
        "digest_checked": str(result.digest_checked) if result.digest_checked else None,
        "findings": [{"position": f.position, "what": f.what} for f in result.findings],
    }


class DigestBody(BaseModel):
    model_config = ConfigDict(title="LedgerDigest")
    digest: str
    position: int


class FindingDoc(BaseModel):
    model_config = ConfigDict(title="VerificationFinding")
    position: int
    what: str


class VerificationBody(BaseModel):
    model_config = ConfigDict(title="LedgerVerification")
    intact: bool
    events: int
    streams: int
    digest_checked: str | None
    findings: list[FindingDoc]


class HistoryEventDoc(BaseModel):
    model_config = ConfigDict(title="HistoryEvent")
    version: int
    type: str
    recorded_at: str
    actor_id: str | None
    data: dict[str, Any]
    hash: str | None
    prev_hash: str | None


class HistoryBody(BaseModel):
    model_config = ConfigDict(title="LotHistory")
    lot_code: str
    events: list[HistoryEventDoc]
