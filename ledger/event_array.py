"""A batch's events as the append function's one binary argument, written in one pass.

psycopg dumps a list of composite values in Python, field by field through its generic
adapters: a tenth of the event loop's time in the ledger's appends. This writes the same
bytes (PostgreSQL's binary array of records, as `array_send` and `record_send` lay them
out) with one `struct` call per event; a test pins them against psycopg's own dump.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.composite import CompositeInfo

# The composite the append function takes: (originator_id uuid, originator_version int8,
# topic text, state bytea), by the oids PostgreSQL gives those types.
_FIELD_TYPES = (2950, 20, 25, 17)
_ARRAY_HEAD = struct.Struct("!iiIii")  # dimensions, has nulls, element type, length, first index
# An element's length, then the record: its field count, and each field's type, length
# and value (the topic's value and the state follow as they are).
_EVENT_HEAD = struct.Struct("!iiIi16sIiqIi")
_STATE_HEAD = struct.Struct("!Ii")
_FIXED_BYTES = _EVENT_HEAD.size - 4 + _STATE_HEAD.size


class EventArray:
    """The events of a batch's appends, in batch order, for the dumper below."""

    __slots__ = ("appends",)

    def __init__(self, appends: Sequence[Any]) -> None:
        self.appends = appends


def event_array_dumper(info: CompositeInfo) -> type[Dumper]:
    """A dumper of `EventArray` as an array of the composite `info` describes."""
    if tuple(info.field_types) != _FIELD_TYPES:
        raise TypeError(f"{info.name} is not (uuid, int8, text, bytea): {info.field_types}")
    record_type = info.oid
    uuid_type, int8_type, text_type, bytea_type = _FIELD_TYPES

    class EventArrayDumper(Dumper):
        format = Format.BINARY
        oid = info.array_oid

        def dump(self, obj: EventArray) -> bytes:
            parts: list[bytes] = [b""]
            append_part = parts.append
            count = 0
            for append in obj.appends:
                for event in append.events:
                    topic = event.topic.encode()
                    state = event.state
                    append_part(_EVENT_HEAD.pack(
                        _FIXED_BYTES + len(topic) + len(state), 4,
                        uuid_type, 16, event.originator_id.bytes,
                        int8_type, 8, event.originator_version,
                        text_type, len(topic),
                    ))
                    append_part(topic)
                    append_part(_STATE_HEAD.pack(bytea_type, len(state)))
                    append_part(state)
                    count += 1
            parts[0] = _ARRAY_HEAD.pack(1, 0, record_type, count, 1)
            return b"".join(parts)

    return EventArrayDumper
