"""The library's JSON for events, written by orjson.

Encoding a lot's two events was a sixth of a registration's time on the event loop: the
standard library's encoder calls back into Python for every UUID, Decimal and datetime.
Here the registered transcodings tag those values first, as the same `_type_`/`_data_`
objects, and orjson writes the result. The bytes are the library's, byte for byte, so
reading stays the library's and a log written before needs nothing. Whatever this does
not take as it is (a float, a subclass, a key that is not a string, an integer beyond
64 bits) goes to the library's encoder, which encodes or refuses it as it always has.
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

_PLAIN = frozenset({str, int, bool, type(None)})


class _NotPlain(Exception):
    pass


class TaggingJSONTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(self._tagged(obj))
        except (_NotPlain, orjson.JSONEncodeError):
            return super().encode(obj)

    def _tagged(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            return {k: v if type(v) in _PLAIN else self._tagged(v) for k, v in value.items()}
        if kind is list or kind is tuple:
            return [v if type(v) in _PLAIN else self._tagged(v) for v in value]
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _NotPlain
        data = transcoding.encode(value)
        return {
            "_type_": transcoding.name,
            "_data_": data if type(data) in _PLAIN else self._tagged(data),
        }
