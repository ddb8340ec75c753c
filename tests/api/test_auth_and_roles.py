"""Who may do what: logging in, bearer tokens, and the five plant roles."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey

from api.legacy_shapes import timestamp
from api.main import create_app
from api.security import TokenService
from ledger.values import SYSTEM_ACTOR_ID, Role

PASSWORD = "correct horse battery"
INVALID_CREDENTIALS = '{"detail":"Invalid credentials","error":"Invalid credentials"}'
FORBIDDEN = '{"detail":"Insufficient permissions","error":"Insufficient permissions"}'
WRITERS = [Role.ADMIN, Role.MANAGER, Role.OPERATOR]
READ_ONLY = [Role.AUDITOR, Role.VIEWER]


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert list(body) == ["detail", "error"]
    assert body["detail"] == body["error"] and body["error"]
    assert response.headers.get("www-authenticate", "").startswith("Bearer")


def assert_forbidden(response) -> None:
    assert response.status_code == 403, response.text
    assert response.text == FORBIDDEN


def wait_until_projected(container) -> None:
    head = container.ledger.recorder.max_notification_id() or 0
    assert container.watermark.wait_for(head, 10), "projector did not catch up"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def login(client, email: str, password: str | None = PASSWORD):
    body = {"email": email} if password is None else {"email": email, "password": password}
    return client.post("/api/login", json=body)


@pytest.fixture
def beef_lot(client, auth) -> dict:
    response = client.post(
        "/api/lots", json={"lot_code": "RAW-AUTH-1", "weight_kg": 100}, headers=auth(Role.ADMIN)
    )
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def protected(beef_lot):
    """The three calls that need a token, as (method, path, body)."""
    return {
        "register-lot": ("post", "/api/lots", {"lot_code": "RAW-AUTH-NEW"}),
        "record-qc": ("post", "/api/qc-decisions", {"lot_id": beef_lot["id"], "decision": "PASS"}),
        "trace": ("get", "/api/traceability/RAW-AUTH-1", None),
    }


def call(client, request, headers):
    method, path, body = request
    return client.request(method, path, json=body, headers=headers)


# --- no token needed ------------------------------------------------------------------


def test_the_health_probe_and_the_login_need_no_token(client, add_user):
    email = add_user(Role.VIEWER)

    assert client.get("/api/health").status_code == 200
    assert login(client, email).status_code == 200


# --- bad tokens -----------------------------------------------------------------------


def _tampered_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    return f"{head}.{payload}.{flipped}"


def _escalated_payload(token: str) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{head}.{b64({**claims, 'role': 'ADMIN'})}.{signature}"


def _unsigned(token: str) -> str:
    _, payload, _ = token.split(".")
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."


def _expired(container, user_id) -> str:
    tokens = TokenService(container.settings.jwt_secret(), expire_minutes=-1)
    return tokens.issue(user_id, "ADMIN", "admin@plant.example")


def _other_secret(container, user_id) -> str:
    tokens = TokenService("another-plant-" + "q8Zr3LmW5tY1nB7v" * 3, expire_minutes=60)
    return tokens.issue(user_id, "ADMIN", "admin@plant.example")


def _no_expiry(container, user_id) -> str:
    key = OctKey.import_key(container.settings.jwt_secret())
    claims = {"sub": str(user_id), "role": "ADMIN", "email": "admin@plant.example"}
    return jwt.encode({"alg": "HS256"}, claims, key)


def _not_a_user(container, user_id) -> str:
    key = OctKey.import_key(container.settings.jwt_secret())
    claims = {"sub": "forklift-7", "role": "ADMIN", "exp": int(time.time()) + 600}
    return jwt.encode({"alg": "HS256"}, claims, key)


BAD_AUTHORIZATION = {
    "missing": lambda token, container, uid: {},
    "empty-bearer": lambda token, container, uid: {"Authorization": "Bearer "},
    "abc": lambda token, container, uid: bearer("abc"),
    "a.b.c": lambda token, container, uid: bearer("a.b.c"),
    "basic-scheme": lambda token, container, uid: {"Authorization": f"Basic {token}"},
    "no-scheme": lambda token, container, uid: {"Authorization": token},
    "tampered-signature": lambda token, container, uid: bearer(_tampered_signature(token)),
    "escalated-role": lambda token, container, uid: bearer(_escalated_payload(token)),
    "alg-none": lambda token, container, uid: bearer(_unsigned(token)),
    "expired": lambda token, container, uid: bearer(_expired(container, uid)),
    "other-secret": lambda token, container, uid: bearer(_other_secret(container, uid)),
    "no-expiry": lambda token, container, uid: bearer(_no_expiry(container, uid)),
    "subject-not-a-uuid": lambda token, container, uid: bearer(_not_a_user(container, uid)),
}


@pytest.mark.parametrize("endpoint", ["register-lot", "record-qc", "trace"])
@pytest.mark.parametrize("bad", list(BAD_AUTHORIZATION))
def test_a_caller_without_a_valid_token_is_turned_away(
    client, app_container, token_for, protected, endpoint, bad
):
    viewer_token = token_for(Role.VIEWER)
    viewer_id = app_container.ledger.find_user_by_email("viewer@plant.example").id
    headers = BAD_AUTHORIZATION[bad](viewer_token, app_container, viewer_id)

    response = call(client, protected[endpoint], headers)

    assert_unauthorized(response)
    assert "Traceback" not in response.text


def test_a_rejected_token_records_nothing(client, token_for, auth):
    forged = _escalated_payload(token_for(Role.VIEWER))

    refused = client.post("/api/lots", json={"lot_code": "RAW-FORGED"}, headers=bearer(forged))

    assert_unauthorized(refused)
    trace = client.get("/api/traceability/RAW-FORGED", headers=auth(Role.ADMIN))
    assert trace.status_code == 404


# --- roles ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", WRITERS)
def test_admins_managers_and_operators_register_lots_and_record_qc(client, auth, role):
    headers = auth(role)

    lot = client.post("/api/lots", json={"lot_code": f"RAW-{role}"}, headers=headers)
    decision = client.post(
        "/api/qc-decisions",
        json={"lot_id": lot.json()["id"], "decision": "HOLD", "notes": "Waiting for the vet"},
        headers=headers,
    )

    assert lot.status_code == 201, lot.text
    assert decision.status_code == 201, decision.text


@pytest.mark.parametrize("role", READ_ONLY)
@pytest.mark.parametrize("endpoint", ["register-lot", "record-qc"])
def test_auditors_and_viewers_cannot_register_lots_or_record_qc(
    client, auth, protected, role, endpoint
):
    response = call(client, protected[endpoint], auth(role))

    assert_forbidden(response)


@pytest.mark.parametrize("role", READ_ONLY)
def test_a_refused_viewer_or_auditor_leaves_no_trace_in_the_ledger(client, auth, beef_lot, role):
    assert_forbidden(
        client.post("/api/lots", json={"lot_code": "RAW-SNEAKY"}, headers=auth(role))
    )
    assert_forbidden(
        client.post(
            "/api/qc-decisions",
            json={"lot_id": beef_lot["id"], "decision": "FAIL", "notes": "I should not be here"},
            headers=auth(role),
        )
    )

    assert client.get("/api/traceability/RAW-SNEAKY", headers=auth(role)).status_code == 404
    # No FAIL was recorded: the beef can still go into a mix.
    mix = client.post(
        "/api/lots",
        json={"lot_code": "MIX-AFTER",
              "inputs": [{"lot_code": "RAW-AUTH-1", "quantity_used_kg": 1}]},
        headers=auth(Role.OPERATOR),
    )
    assert mix.status_code == 201, mix.text


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_trace_a_lot(client, auth, beef_lot, role):
    response = client.get("/api/traceability/RAW-AUTH-1", headers=auth(role))

    assert response.status_code == 200, response.text
    assert response.json()["central"] == beef_lot


# --- login ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attempt",
    [
        {"email": "operator@plant.example", "password": "wrong horse battery"},
        {"email": "operator@plant.example", "password": ""},
        {"email": "nobody@plant.example", "password": PASSWORD},
        {"email": "retired@plant.example", "password": PASSWORD},
    ],
    ids=["wrong-password", "empty-password", "unknown-email", "deactivated"],
)
def test_a_failed_login_says_only_invalid_credentials(client, app_container, add_user, attempt):
    add_user(Role.OPERATOR)
    add_user(Role.OPERATOR, email="retired@plant.example")
    retired = app_container.ledger.find_user_by_email("retired@plant.example")
    app_container.ledger.deactivate_user(retired.id, actor_id=SYSTEM_ACTOR_ID)

    response = client.post("/api/login", json=attempt)

    assert response.status_code == 401
    assert response.text == INVALID_CREDENTIALS
    assert "token" not in response.text


def test_a_login_gives_a_token_that_works_as_a_bearer_token(client, add_user):
    email = add_user(Role.OPERATOR)

    token = login(client, email).json()["token"]

    lot = client.post("/api/lots", json={"lot_code": "RAW-TOKEN"}, headers=bearer(token))
    assert lot.status_code == 201, lot.text


def test_a_login_shows_when_the_previous_login_happened(client, app_container, add_user):
    email = add_user(Role.MANAGER)
    user_id = app_container.ledger.find_user_by_email(email).id

    first = login(client, email)
    first_time = app_container.ledger.get_user(user_id).last_login
    second = login(client, email)
    second_time = app_container.ledger.get_user(user_id).last_login
    third = login(client, email)

    assert first.json()["user"]["last_login"] is None
    assert second.json()["user"]["last_login"] == timestamp(first_time)
    assert third.json()["user"]["last_login"] == timestamp(second_time)
    assert second_time > first_time
    assert first.json()["user"]["created_at"] == second.json()["user"]["created_at"]


def test_an_email_only_login_is_refused_when_passwordless_mode_is_off(client, add_user):
    email = add_user(Role.OPERATOR)
    passwordless_user = add_user(Role.VIEWER, password=None)

    assert login(client, email, password=None).text == INVALID_CREDENTIALS
    assert login(client, passwordless_user, password=None).text == INVALID_CREDENTIALS


@pytest.mark.parametrize(
    "body",
    [{}, {"password": PASSWORD}, {"email": "no-at-sign", "password": PASSWORD}, {"email": None}],
    ids=["empty", "no-email", "not-an-email", "null-email"],
)
def test_a_login_without_a_usable_email_is_refused_as_invalid_input(client, body):
    response = client.post("/api/login", json=body)

    assert response.status_code == 422
    assert list(response.json()) == ["detail", "error"]
    assert isinstance(response.json()["detail"], list)


@pytest.fixture
def passwordless_client(make_container):
    """The demo/migration deployment: email-only login switched on by configuration."""
    container = make_container(run_projector=True, flowviz_passwordless_login=True)
    with TestClient(create_app(container=container)) as test_client:
        yield test_client, container


def test_in_passwordless_demo_mode_an_email_is_enough_to_log_in(passwordless_client):
    client, container = passwordless_client
    container.ledger.register_user(
        email="admin@flowviz.com", full_name="System Admin", role="ADMIN",
        password_hash=None, actor_id=SYSTEM_ACTOR_ID,
    )

    response = login(client, "admin@flowviz.com", password=None)

    assert response.status_code == 200, response.text
    assert response.json()["user"]["role"] == "ADMIN"
    assert response.json()["user"]["last_login"] is None
    lot = client.post(
        "/api/lots", json={"lot_code": "RAW-DEMO"}, headers=bearer(response.json()["token"])
    )
    assert lot.status_code == 201, lot.text


def test_in_passwordless_demo_mode_a_wrong_password_is_still_refused(passwordless_client):
    client, container = passwordless_client
    container.ledger.register_user(
        email="manager@flowviz.com", full_name=None, role="MANAGER",
        password_hash=container.passwords.hash(PASSWORD), actor_id=SYSTEM_ACTOR_ID,
    )
    container.ledger.register_user(
        email="retired@flowviz.com", full_name=None, role="MANAGER",
        password_hash=None, actor_id=SYSTEM_ACTOR_ID,
    )
    retired = container.ledger.find_user_by_email("retired@flowviz.com")
    container.ledger.deactivate_user(retired.id, actor_id=SYSTEM_ACTOR_ID)

    assert login(client, "manager@flowviz.com", "not the password").text == INVALID_CREDENTIALS
    assert login(client, "ghost@flowviz.com", password=None).text == INVALID_CREDENTIALS
    assert login(client, "retired@flowviz.com", password=None).text == INVALID_CREDENTIALS
    manager = login(client, "manager@flowviz.com", password=None)
    assert manager.status_code == 200
    assert manager.json()["user"]["full_name"] is None


# --- changes to a user take effect on tokens already issued ----------------------------


def test_a_deactivated_operators_token_stops_working(client, app_container, token_for):
    app_container.access.ttl_seconds = 0
    headers = bearer(token_for(Role.OPERATOR))
    before = client.post("/api/lots", json={"lot_code": "RAW-BEFORE"}, headers=headers)
    assert before.status_code == 201
    operator = app_container.ledger.find_user_by_email("operator@plant.example")

    app_container.ledger.deactivate_user(operator.id, actor_id=SYSTEM_ACTOR_ID)
    wait_until_projected(app_container)

    assert_unauthorized(client.post("/api/lots", json={"lot_code": "RAW-AFTER"}, headers=headers))
    assert_unauthorized(client.get("/api/traceability/RAW-BEFORE", headers=headers))
    assert login(client, "operator@plant.example").text == INVALID_CREDENTIALS


def test_while_a_rebuild_replays_users_a_deactivated_token_stays_refused(
    client, app_container, token_for
):
    """The read side forgets users during a rebuild; the ledger still knows who left."""
    app_container.access.ttl_seconds = 0
    headers = bearer(token_for(Role.OPERATOR))
    operator = app_container.ledger.find_user_by_email("operator@plant.example")
    app_container.ledger.deactivate_user(operator.id, actor_id=SYSTEM_ACTOR_ID)
    wait_until_projected(app_container)
    with app_container.read_pool.connection() as conn:
        conn.execute("TRUNCATE users, user_state")

    assert_unauthorized(client.get("/api/traceability/ANY", headers=headers))
    viewer = bearer(token_for(Role.VIEWER))
    with app_container.read_pool.connection() as conn:
        conn.execute("TRUNCATE users, user_state")
    assert client.get("/api/traceability/ANY", headers=viewer).status_code == 404


@pytest.mark.parametrize(
    ("start", "then", "status"),
    [(Role.VIEWER, Role.OPERATOR, 201), (Role.OPERATOR, Role.AUDITOR, 403)],
    ids=["viewer-promoted", "operator-moved-to-audit"],
)
def test_a_role_change_applies_to_a_token_already_issued(
    client, app_container, token_for, start, then, status
):
    app_container.access.ttl_seconds = 0
    headers = bearer(token_for(start))
    user = app_container.ledger.find_user_by_email(f"{start.value.lower()}@plant.example")

    app_container.ledger.change_role(user.id, then.value, actor_id=SYSTEM_ACTOR_ID)
    wait_until_projected(app_container)

    response = client.post("/api/lots", json={"lot_code": "RAW-ROLE"}, headers=headers)
    assert response.status_code == status, response.text
    assert login(client, user.email).json()["user"]["role"] == then.value
