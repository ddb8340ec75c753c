"""Instructions per ledger registration, counted by valgrind's callgrind: a figure that
does not move with the machine's load, where a rate on these shared machines moves by a
third between two runs of the same code.

    DATABASE_URL=postgresql://... uv run python scripts/bench/instructions.py [--threads]

Runs the registrations of (d) (raw lots, 16 callers: tasks on one uvloop loop as a POST
appends, or with --threads sixteen threads) twice under callgrind, 400 and 2,000 of them,
and prints the difference per registration, so that start-up and imports cancel out.
Needs valgrind (Debian package `valgrind`) and a PostgreSQL it may create a schema in.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

CALLERS = 16
FEW, MANY = 400, 2000


def register(url: str, count: int, threads: bool) -> None:
    import psycopg  # noqa: PLC0415 - imported in the counted child only
    from ledger_load import register_raw_lots  # noqa: PLC0415

    from ledger.application import Ledger  # noqa: PLC0415
    from ledger.event_store import postgres_env  # noqa: PLC0415

    schema = f"bench_count_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    ledger = Ledger(postgres_env(url, schema=schema, pool_size=CALLERS, group_commit=True))
    each = count // CALLERS
    try:
        register_raw_lots(ledger, CALLERS, event_loop=not threads, go_on=lambda i: i < each)
    finally:
        ledger.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def counted(count: int, threads: bool) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", str(count), *(["--threads"] if threads else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", action="store_true", help="sixteen threads, not tasks")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server")
    if args.child is not None:
        register(url, args.child, args.threads)
        return
    few, many = counted(FEW, args.threads), counted(MANY, args.threads)
    callers = "threads" if args.threads else "tasks on one event loop"
    print(f"{(many - few) / (MANY - FEW):,.0f} instructions per registration"
          f" ({CALLERS} {callers}; {FEW:,} and {MANY:,} registrations counted)")


if __name__ == "__main__":
    # The project, and its sibling scripts in scripts/ (ledger_load).
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).parents[1])]
    main()
