"""Request-scoped dependencies: the container, the caller, and role checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.composition import MISSING, Container
from api.security import InvalidToken
from ledger.errors import UserNotFound
from ledger.values import Role
from projections.queries import UserAccess


# Dependencies are `async def` although they do no I/O of their own: FastAPI runs a plain
# `def` dependency in its thread pool, a hop per dependency per request.
async def get_container(request: Request) -> Container:
    return request.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]

_bearer = HTTPBearer(auto_error=False)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    user_id: UUID
    role: str
    email: str


async def current_principal(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "Not authenticated", headers=_CHALLENGE)
    try:
        claims = container.tokens.verify(credentials.credentials)
    except InvalidToken:
        raise HTTPException(401, "Invalid or expired token", headers=_CHALLENGE) from None
    # The read side decides role and status, so a role change or deactivation takes
    # effect before the token expires (within the access cache's few seconds).
    access = container.access.cached(claims.user_id)
    if access is MISSING:  # a database read: keep it off the event loop
        access = await run_in_threadpool(container.access.get, claims.user_id)
    if access is None:
        # Not on the read side (just registered, or a rebuild is replaying): the ledger
        # decides, never the token, so a deactivated user's token cannot come back.
        access = await run_in_threadpool(ledger_access, container, claims.user_id)
    if access is None:
        raise HTTPException(401, "Invalid or expired token", headers=_CHALLENGE)
    if not access.active:
        raise HTTPException(401, "User is deactivated", headers=_CHALLENGE)
    return Principal(user_id=claims.user_id, role=access.role, email=claims.email)


def ledger_access(container: Container, user_id: UUID) -> UserAccess | None:
    try:
        user = container.ledger.get_user(user_id)
    except UserNotFound:
        return None
    return UserAccess(role=user.role, active=user.active)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role):
    allowed = frozenset(r.value for r in roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(403, "Insufficient permissions")
        return principal

    return Depends(check)


WRITERS = (Role.ADMIN, Role.MANAGER, Role.OPERATOR)
Writer = Annotated[Principal, require_roles(*WRITERS)]
# History, recall and verification answer for the whole plant: not for the shop floor.
AUDIT_ROLES = (Role.ADMIN, Role.MANAGER, Role.AUDITOR)
Auditor = Annotated[Principal, require_roles(*AUDIT_ROLES)]
