from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from api import legacy_shapes
from api.dependencies import ContainerDep
from api.json_body import ExactJsonRoute
from api.responses import LegacyJSONResponse
from api.schemas import LoginIn

router = APIRouter(route_class=ExactJsonRoute)

# One message for unknown e-mail, wrong password and deactivated user: no enumeration.
INVALID = "Invalid credentials"
TOO_MANY = "Too many failed logins; try again later"


@router.post(
    "/api/login",
    tags=["auth"],
    responses=legacy_shapes.documented(200, legacy_shapes.LoginBody, 401, 422, 429),
)
def login(body: LoginIn, request: Request, container: ContainerDep) -> LegacyJSONResponse:
    throttle = container.login_throttle
    client = request.client.host if request.client else "unknown"
    key = f"{body.email.lower()}|{client}"
    wait = throttle.attempt(key)
    if wait:
        raise HTTPException(429, TOO_MANY, headers={"Retry-After": str(wait)})
    user = container.ledger.find_user_by_email(body.email)
    if user is None or not user.active:
        container.passwords.spend_time()
        user = None
    elif body.password is not None:
        if not container.passwords.verify(body.password, user.password_hash):
            user = None
    elif not container.settings.flowviz_passwordless_login:
        container.passwords.spend_time()
        user = None
    if user is None:
        raise HTTPException(401, INVALID)
    throttle.succeeded(key)
    committed = container.ledger.record_login(user.id)
    user = committed.aggregate
    token = container.tokens.issue(user.id, user.role, user.email)
    body_user = legacy_shapes.user(user, last_login=committed.extra["previous_login"])
    return LegacyJSONResponse(legacy_shapes.login(body_user, token))
