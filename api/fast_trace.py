"""The legacy traceability read, answered without FastAPI's routing and dependencies.

It is the plant's hottest request (every scanner at every station), and once its query
is one shared statement most of its cost is the framework around it. This ASGI layer
answers only the plain success case (a valid token of an active user already in the
access cache, and a lot that exists) with the very bytes the route would send; anything
else goes on to the route, which owns every error answer.
"""

from __future__ import annotations

import time

from starlette.types import Receive, Scope, Send

from api import legacy_shapes
from api.fast_path import FastPath, cached_principal
from api.responses import LegacyJSONResponse

PREFIX = "/api/traceability/"
_CONTENT_TYPE = LegacyJSONResponse.media_type.encode()


class FastTraceability(FastPath):
    method = "GET"

    def takes_path(self, path: str) -> bool:
        return path.startswith(PREFIX) and not path.endswith("/graph")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.takes(scope) or not await self._answered(scope, send):
            await self.app(scope, receive, send)

    async def _answered(self, scope: Scope, send: Send) -> bool:
        lot_code = scope["path"][len(PREFIX):]
        container = self.container
        principal = cached_principal(container, scope)
        if principal is None or not lot_code:
            return False
        started = time.perf_counter()
        try:
            trace = await container.read_model.traceability(lot_code)
            elapsed = time.perf_counter() - started
            if trace is None:
                return False
            body = legacy_shapes.traceability(trace.central, trace.parents, trace.children)
        except Exception:  # noqa: BLE001 - the route answers failures (a 503 or a 500)
            return False
        container.metrics.traceability_seconds_now.observe(elapsed)
        scope["route"] = self.route
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", _CONTENT_TYPE),
            ],
        })
        await send({"type": "http.response.body", "body": body})
        return True
