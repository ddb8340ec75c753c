"""Production refuses to start with secrets or switches meant for demos."""

import pytest

from api.settings import ConfigurationError, Settings

STRONG = "kR8#vQ2!mZ5@tW9$pL3%nB7^cX1&dF6*"


@pytest.mark.parametrize(
    ("secret", "passwordless", "complaint"),
    [
        (None, False, "SECRET_KEY is not set"),
        ("changeme", False, "placeholder"),
        ("secret", False, "placeholder"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", False, "placeholder"),
        ("Short-But-Varied-1", False, "shorter than 32"),
        (STRONG, True, "FLOWVIZ_PASSWORDLESS_LOGIN"),
    ],
)
def test_production_refuses_weak_configuration(secret, passwordless, complaint):
    settings = Settings(
        environment="production", secret_key=secret, flowviz_passwordless_login=passwordless
    )
    with pytest.raises(ConfigurationError, match=complaint):
        settings.check_startable()


def test_production_starts_with_a_strong_secret_and_passwords_required():
    Settings(environment="production", secret_key=STRONG).check_startable()


def test_development_without_a_secret_makes_one_up_for_this_process_only():
    settings = Settings(environment="development", secret_key=None)
    settings.check_startable()
    assert len(settings.jwt_secret()) >= 32
    assert settings.jwt_secret() == settings.jwt_secret()


def test_settings_come_from_the_environment_when_built_not_at_import(monkeypatch):
    monkeypatch.setenv("JWT_EXPIRE_MINUTES", "15")
    monkeypatch.setenv("FLOWVIZ_PASSWORDLESS_LOGIN", "true")
    settings = Settings()
    assert settings.jwt_expire_minutes == 15
    assert settings.flowviz_passwordless_login is True


@pytest.mark.parametrize("schema", ["RvMixedCase", "plant one", "x; DROP", "1abc", ""])
def test_a_schema_name_that_cannot_go_into_search_path_as_is_is_refused(schema):
    from pydantic import ValidationError  # noqa: PLC0415

    with pytest.raises(ValidationError):
        Settings(database_schema=schema)
