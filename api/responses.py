"""JSON responses serialized once, compactly, keeping key order (as Express's res.json)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.responses import JSONResponse


class LegacyJSONResponse(JSONResponse):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            # What orjson refuses (integers beyond 64 bits, lone surrogates echoed back in a
            # validation error's `input`) still gets an answer rather than a 500.
            return json.dumps(content, separators=(",", ":"), default=str).encode()
