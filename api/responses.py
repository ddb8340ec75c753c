"""JSON responses serialized once, compactly, keeping key order (as Express's res.json)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class LegacyJSONResponse(JSONResponse):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
