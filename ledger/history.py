"""A lot's recorded history, as an auditor replays it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from ledger.hash_chain import ChainedEvent

# Envelope fields every event has; the rest is what the event says.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


@dataclass(frozen=True)
class HistoryEntry:
    position: int
    version: int
    type: str
    recorded_at: datetime
    actor_id: UUID | None
    data: dict[str, Any]
    hash: bytes | None
    prev_hash: bytes | None
    event: DomainEventProtocol[UUID]

    @classmethod
    def of(cls, event: DomainEventProtocol[UUID], chained: ChainedEvent) -> HistoryEntry:
        data = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
        return cls(
            position=chained.position,
            version=chained.version,
            type=chained.topic.rpartition(":")[2],
            recorded_at=event.timestamp,
            actor_id=data.get("actor_id"),
            data=data,
            hash=chained.hash,
            prev_hash=chained.prev_hash,
            event=event,
        )


@dataclass(frozen=True)
class LotHistory:
    lot_id: UUID
    lot_code: str
    entries: list[HistoryEntry]

    def replay(self) -> Any:
        """The lot as these events make it: the same code path the repository takes."""
        lot = None
        for entry in self.entries:
            lot = entry.event.mutate(lot)
        return lot
