"""The caller of a hot request, when everything about it is already known in memory.

The layers in front of FastAPI (`fast_trace`, `fast_post_lots`) take a request only when
its bearer token is valid and its user's role and status are in the access cache. `None`
sends the request on to the routes, whose `current_principal` owns every refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.composition import MISSING
from api.dependencies import Principal
from api.security import InvalidToken

if TYPE_CHECKING:
    from starlette.types import Scope

    from api.composition import Container


def cached_principal(container: Container, scope: Scope) -> Principal | None:
    authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    if authorization is None:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims = container.tokens.verify(token)
    except InvalidToken:
        return None
    access = container.access.cached(claims.user_id)
    if access is MISSING or access is None or not access.active:  # type: ignore[union-attr]
        return None
    return Principal(user_id=claims.user_id, role=access.role, email=claims.email)  # type: ignore[union-attr]
