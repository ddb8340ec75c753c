"""POST /api/lots, the plant's hottest write, answered without FastAPI's routing and dependencies.

Under load most of a registration's server time is the framework around it (routing,
dependency solving, body handling), not the ledger. Like `fast_trace`, this layer takes
only the plain case: a writer whose token and access are known in memory, and a JSON
body that passes the route's own screening and `LotIn`. If the ledger refuses the lot,
nothing was recorded, and the request goes on to the route with its body replayed: the
route repeats the attempt and words the refusal, as it always does. Once the ledger has
committed, this layer answers the 201 itself, with the route's own `created_lot`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from api.dependencies import WRITERS
from api.fast_path import FastPath, cached_principal
from api.json_body import MAX_BODY_BYTES, screened_json
from api.routes.lots import created_lot, new_lot
from api.schemas import LotIn

PATH = "/api/lots"
_WRITER_ROLES = frozenset(role.value for role in WRITERS)


class FastPostLots(FastPath):
    method = "POST"

    def takes_path(self, path: str) -> bool:
        return path == PATH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.takes(scope):
            await self.app(scope, receive, send)
            return
        principal = cached_principal(self.container, scope)
        if principal is None or principal.role not in _WRITER_ROLES or not _sized_json(scope):
            await self.app(scope, receive, send)
            return
        messages = await _read_body(receive)
        body = _valid_body(b"".join(m.get("body", b"") for m in messages))
        if body is None:
            await self.app(scope, _replaying(messages, receive), send)
            return
        try:
            command = new_lot(body, principal)
            committed = await self.container.ledger.register_lot_async(
                command, actor_id=principal.user_id, run_blocking=run_in_threadpool
            )
        except Exception:  # noqa: BLE001 - nothing was recorded; the route words refusals
            await self.app(scope, _replaying(messages, receive), send)
            return
        scope["route"] = self.route
        response = await created_lot(self.container, committed)
        await response(scope, receive, send)


def _sized_json(scope: Scope) -> bool:
    """A JSON body of a declared size within the limit; anything else is the route's case."""
    content_type = length = b""
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            length = value
    return (
        content_type.split(b";")[0].strip().lower() == b"application/json"
        and length.isdigit()
        and int(length) <= MAX_BODY_BYTES
    )


async def _read_body(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _valid_body(raw: bytes) -> LotIn | None:
    try:
        data = screened_json(raw)
        return LotIn.model_validate(data) if isinstance(data, dict) else None
    except Exception:  # noqa: BLE001 - every refusal is the route's to word
        return None


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
