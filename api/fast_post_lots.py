"""POST /api/lots, the plant's hottest write, answered without FastAPI's routing and dependencies.

Under load most of a registration's server time is the framework around it (routing,
dependency solving, body handling), not the ledger. Like `fast_trace`, this layer takes
only the plain case: a writer whose token and access are known in memory, and a JSON
body that passes the route's own screening and `LotIn`. Everything else goes on to the
route with its body replayed. The ledger's answer is given here in the route's words:
the 201 by the route's own `created_lot`, a refusal (nothing was recorded) by the same
`ledger_refusal` as the route's error handler, so that a taken code costs one attempt at
the ledger, not a second one by the route. A failure that is not a refusal (the database
unreachable) goes on to the route, which tries once more and answers as it always does.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from api.dependencies import WRITERS
from api.errors import ledger_refusal, unexpected_failure
from api.fast_path import FastPath, cached_principal
from api.json_body import MAX_BODY_BYTES, screened_json
from api.routes.lots import created_lot, new_lot
from api.schemas import LotIn
from ledger.errors import LedgerError

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
        except LedgerError as refused:
            response = ledger_refusal(refused)
        except Exception:  # noqa: BLE001 - nothing was recorded; the route tries again
            await self.app(scope, _replaying(messages, receive), send)
            return
        else:
            try:
                response = await created_lot(self.container, committed)
            except Exception as e:  # noqa: BLE001 - recorded: not the route's to try again
                # These layers sit outside FastAPI's own server-error layer, so the plain
                # 500 its handler would give is given here.
                response = unexpected_failure(e)
        scope["route"] = self.route
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
