"""What the layers in front of FastAPI (`fast_trace`, `fast_post_lots`) share.

Each answers the plain case of one hot route itself, and only when its caller is already
known in memory: a valid bearer token whose user's role and status are in the access
cache. Anything else goes on to the route, which owns every refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from api.composition import MISSING
from api.dependencies import Principal
from api.security import InvalidToken

if TYPE_CHECKING:
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Scope

    from api.composition import Container


class FastPath:
    method: ClassVar[str]

    def __init__(self, app: ASGIApp, container: Container, route: BaseRoute) -> None:
        self.app = app
        self.container = container
        self.route = route  # what the metrics label the request with, as if routed

    def takes(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope["method"] == self.method
            and not scope.get("root_path")
            and self.takes_path(scope["path"])
        )

    def takes_path(self, path: str) -> bool:
        raise NotImplementedError


def cached_principal(container: Container, scope: Scope) -> Principal | None:
    authorization = None
    for key, value in scope["headers"]:
        # A loop, not next() over a generator, whose close raised GeneratorExit every request.
        if key == b"authorization":
            authorization = value
            break
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
