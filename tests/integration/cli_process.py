"""The `flowviz` command line run as an operator runs it: a process of its own, with only
the environment it is given (none of this test run's database settings leak into it)."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = [sys.executable, "-c", "from api.cli import main; main()"]
INHERITED_OFF = {"DATABASE_URL", "DATABASE_SCHEMA", "SECRET_KEY", "ENVIRONMENT",
                 "FLOWVIZ_PASSWORDLESS_LOGIN", "FLOWVIZ_DATA_DIR"}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_OFF}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", "BCRYPT_ROUNDS": "4", **extra}


def flowviz(*args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60):
    return subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )
