from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api import legacy_shapes
from api.dependencies import ContainerDep
from api.json_body import ExactJsonRoute
from api.responses import LegacyJSONResponse
from api.schemas import LoginIn

router = APIRouter(route_class=ExactJsonRoute)

# One message for unknown e-mail, wrong password and deactivated user: no enumeration.
INVALID = "Invalid credentials"


@router.post(
    "/api/login",
    tags=["auth"],
    responses=legacy_shapes.documented(200, legacy_shapes.LoginBody, 401, 422),
)
def login(body: LoginIn, container: ContainerDep) -> LegacyJSONResponse:
    user = container.ledger.find_user_by_email(body.email)
    if user is None or not user.active:
        container.passwords.spend_time()
        raise HTTPException(401, INVALID)
    if body.password is not None:
        if not container.passwords.verify(body.password, user.password_hash):
            raise HTTPException(401, INVALID)
    elif not container.settings.passwordless_login:
        container.passwords.spend_time()
        raise HTTPException(401, INVALID)
    committed = container.ledger.record_login(user.id)
    user = committed.aggregate
    token = container.tokens.issue(user.id, user.role, user.email)
    body_user = legacy_shapes.user(user, last_login=committed.extra["previous_login"])
    return LegacyJSONResponse(legacy_shapes.login(body_user, token))
