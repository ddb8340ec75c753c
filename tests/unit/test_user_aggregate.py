"""The User aggregate on its own: plant staff accounts and their e-mail claims."""

from __future__ import annotations

from uuid import uuid4

import pytest

from ledger.errors import LedgerError, UserDeactivated
from ledger.user import User, UserEmail, normalize_email


def new_user(email: str = "operator@plant.example", role: str = "OPERATOR") -> User:
    return User(
        id=uuid4(),
        email=email,
        full_name="Line Operator",
        role=role,
        password_hash="hash-1",
        actor_id=None,
    )


def test_a_new_operator_is_active_and_has_never_logged_in():
    user = new_user()

    assert user.active is True
    assert user.last_login is None
    assert user.role == "OPERATOR"
    assert [type(e) for e in user.collect_events()] == [User.Registered]


def test_logging_in_returns_the_previous_login_for_the_client_to_show():
    user = new_user()

    first = user.log_in()
    after_first = user.last_login
    second = user.log_in()

    assert first is None
    assert after_first is not None
    assert second == after_first
    assert user.last_login == user.modified_on
    assert [type(e) for e in user.collect_events()][-2:] == [User.LoggedIn, User.LoggedIn]


def test_a_deactivated_operator_cannot_log_in_and_nothing_is_recorded():
    user = new_user()
    user.deactivate(actor_id=None)
    version = user.version

    with pytest.raises(UserDeactivated):
        user.log_in()

    assert issubclass(UserDeactivated, LedgerError)
    assert user.active is False
    assert user.last_login is None
    assert user.version == version


@pytest.mark.parametrize(
    ("change", "event", "check"),
    [
        (lambda u: u.change_role("MANAGER", actor_id=None), User.RoleChanged,
         lambda u: u.role == "MANAGER"),
        (lambda u: u.change_password("hash-2", actor_id=None), User.PasswordChanged,
         lambda u: u.password_hash == "hash-2"),
        (lambda u: u.deactivate(actor_id=None), User.Deactivated,
         lambda u: u.active is False),
    ],
    ids=["promoted-to-manager", "password-changed", "deactivated"],
)
def test_account_changes_are_recorded_as_events(change, event, check):
    user = new_user()

    change(user)

    assert check(user)
    assert user.version == 2
    assert type(user.collect_events()[-1]) is event


@pytest.mark.parametrize(
    "spelling", ["QA@Plant.Example", "  qa@plant.example ", "qa@PLANT.EXAMPLE"]
)
def test_an_email_claim_is_the_same_whatever_the_spelling(spelling):
    claim = UserEmail(email=spelling, user_id=uuid4(), actor_id=None)

    assert claim.email == "qa@plant.example" == normalize_email(spelling)
    assert claim.id == UserEmail.id_for("qa@plant.example")


def test_different_addresses_claim_different_records():
    assert UserEmail.id_for("qa@plant.example") != UserEmail.id_for("qc@plant.example")
