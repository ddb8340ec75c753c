"""wrk, the HTTP load generator, run in its own process: its summary as numbers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path


def wrk(url: str, script: Path | None, connections: int, seconds: int,
        env: dict) -> tuple[float, int, int]:
    """Requests per second, requests completed, and those not 2xx (socket errors included)."""
    script_args = ["-s", str(script)] if script is not None else []
    args = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", *script_args, url]
    out = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True,
                         check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return rate, total, failed
