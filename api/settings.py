"""Configuration from the environment, built by a factory so nothing is read at import."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32
# Values seen in tutorials and .env templates; a production secret must be none of them.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme", "change-me", "change_me", "changethis", "secret", "secret-key",
        "secret_key", "your-secret-key", "your_secret_key", "supersecret", "dev", "devsecret",
        "development", "test", "testing", "password", "flowviz", "insecure", "default",
    }
)


class ConfigurationError(RuntimeError):
    """The server must not start with this configuration."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    environment: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    # Lower-case, unquoted identifier: it goes into search_path as it is.
    database_schema: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "public"
    flowviz_data_dir: Path = Path(".flowviz")
    secret_key: SecretStr | None = None
    jwt_expire_minutes: int = 480
    flowviz_passwordless_login: bool = False
    # How long a POST waits for the projector before answering from the event itself.
    flowviz_read_your_writes_timeout: float = 2.0
    flowviz_run_projector: bool = True
    bcrypt_rounds: int = 12
    # The most connections each of a process's three pools may hold (the ledger's, the read
    # side's, the event loop's reads); `serve` lowers it until all its processes fit in the
    # connections PostgreSQL has free.
    db_pool_size: Annotated[int, Field(ge=2)] = 10
    # FastAPI's own OpenTelemetry spans and metrics, for a deployment that configures an
    # OpenTelemetry SDK. Off, FastAPI skips its look for a configured provider, which cost
    # every request about 7 us; the service's metrics are Prometheus's (/metrics).
    flowviz_opentelemetry: bool = False
    redis_url: str | None = None
    # After this many failed logins for one e-mail from one client, refuse for the window.
    login_max_failures: int = 10
    login_lockout_seconds: int = 300

    def problems_for_production(self) -> list[str]:
        problems = []
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if not secret:
            problems.append("SECRET_KEY is not set")
        elif secret.strip().lower() in PLACEHOLDER_SECRETS or len(set(secret)) < 8:
            problems.append("SECRET_KEY is a default or placeholder value")
        elif len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        if self.flowviz_passwordless_login:
            problems.append("FLOWVIZ_PASSWORDLESS_LOGIN must be off in production")
        return problems

    def check_startable(self) -> None:
        if self.environment == "production":
            problems = self.problems_for_production()
            if problems:
                raise ConfigurationError(
                    "refusing to start in production: " + "; ".join(problems)
                )

    def jwt_secret(self) -> str:
        if self.secret_key is None:
            # Development only (production refuses above): tokens die with the process.
            self.secret_key = SecretStr(secrets.token_urlsafe(48))
        return self.secret_key.get_secret_value()


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
