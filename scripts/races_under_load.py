"""The first issue's races and contract, checked over HTTP while wrk keeps POST busy.

    uv run python scripts/races_under_load.py --base-url http://127.0.0.1:8000 \\
        --database-url postgresql://... [--duration 20] [--connections 32]

Against a running server (`flowviz serve`, any number of workers) and the database it
writes to (a server with DATABASE_SCHEMA set: add `?options=-csearch_path%3D<schema>`).
wrk posts new lots for the whole duration; a third of the way in, racing clients (each on
its own connection, released together) try what the invariants forbid:

- twenty terminals registering one lot code: exactly one 201;
- twenty mixers each drawing 10 kg from a 100 kg lot: exactly ten 201s, 100 kg linked;
- ten mixers drawing from a lot on HOLD: no 201;
- every refusal a 409 carrying both `detail` and `error`;
- every 201 a lot row in the legacy shape (key order, decimals as given, ms and `Z`),
  present in `lots` when the answer arrives (a 201 means committed and visible).

After the load: no non-2xx from wrk, and the `lots` rows equal the `Lot.Registered`
events in the log. `scripts/bench.py` runs the same checks as its section (h). Exits 1
when a check fails.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from wrk_load import wrk

from api.legacy_shapes import LOT_KEYS

LUA = Path(__file__).resolve().parent / "bench" / "post_lots.lua"
MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    seen: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


class Racer:
    """Racing clients over HTTP, each on a connection of its own, released together."""

    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                   timeout=60)

    def post(self, path: str, body: dict, client: httpx.Client | None = None) -> Answer:
        response = (client or self.client).post(path, json=body)
        return Answer(response.status_code, response.json())

    def race(self, path: str, bodies: list[dict]) -> list[Answer]:
        barrier = threading.Barrier(len(bodies))

        def one(body: dict) -> Answer:
            with httpx.Client(base_url=self.client.base_url, headers=self.client.headers,
                              timeout=60) as client:
                client.get("/api/health")  # connected before the start
                barrier.wait(timeout=60)
                return self.post(path, body, client)

        with ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(one, bodies))


def statuses(answers: list[Answer]) -> str:
    counts = Counter(a.status for a in answers)
    return ", ".join(f"{n}x{status}" for status, n in sorted(counts.items()))


def legacy_lot_shape(body: dict) -> bool:
    return (tuple(body) == LOT_KEYS and isinstance(body["weight_kg"], str | None)
            and bool(MS_Z.fullmatch(body["created_at"])))


def run_races(racer: Racer, url: str, prefix: str) -> list[Check]:
    checks: list[Check] = []
    created: list[Answer] = []

    def refusals_carry_both_keys(answers: list[Answer]) -> bool:
        refused = [a for a in answers if a.status != 201]
        return all(a.status == 409 and a.body.get("detail")
                   and a.body.get("error") == a.body["detail"] for a in refused)

    code = f"{prefix}-SAME"
    same = racer.race("/api/lots", [{"lot_code": code, "lot_type": "RAW", "weight_kg": "100"}] * 20)
    created += [a for a in same if a.status == 201]
    checks.append(Check("20 terminals register one code: one 201, nineteen 409",
                        statuses(same) == "1x201, 19x409" and refusals_carry_both_keys(same),
                        statuses(same)))

    source = racer.post("/api/lots",
                        {"lot_code": f"{prefix}-RAW", "lot_type": "RAW", "weight_kg": "100"})
    created.append(source)
    draws = racer.race("/api/lots", [
        {"lot_code": f"{prefix}-MIX-{i}", "lot_type": "MIX", "weight_kg": "10",
         "inputs": [{"lot_code": f"{prefix}-RAW", "quantity_used_kg": "10"}]} for i in range(20)])
    created += [a for a in draws if a.status == 201]
    with psycopg.connect(url) as conn:
        linked, children = conn.execute(
            "SELECT coalesce(sum(quantity_used_kg), 0), count(*) FROM lot_genealogy"
            " WHERE parent_lot_id = %s", (source.body.get("id"),)).fetchone()
    checks.append(Check("20 mixers draw 10 kg each from 100 kg: ten 201, ten 409, 100 kg linked",
                        statuses(draws) == "10x201, 10x409" and refusals_carry_both_keys(draws)
                        and linked == 100 and children == 10,
                        f"{statuses(draws)}; {linked} kg linked to {children} children"))

    held = racer.post("/api/lots",
                      {"lot_code": f"{prefix}-HELD", "lot_type": "RAW", "weight_kg": "100"})
    created.append(held)
    hold = racer.post("/api/qc-decisions", {"lot_id": held.body.get("id"), "decision": "HOLD",
                                            "notes": "Metal detector alarm at gate 2"})
    blocked = racer.race("/api/lots", [
        {"lot_code": f"{prefix}-FROM-HELD-{i}", "lot_type": "MIX", "weight_kg": "1",
         "inputs": [{"lot_code": f"{prefix}-HELD", "quantity_used_kg": "1"}]} for i in range(10)])
    checks.append(Check("10 mixers draw from a lot on HOLD: ten 409",
                        hold.status == 201 and statuses(blocked) == "10x409"
                        and refusals_carry_both_keys(blocked),
                        f"HOLD {hold.status}; {statuses(blocked)}"))

    codes = [a.body.get("lot_code") for a in created if a.status == 201]
    with psycopg.connect(url) as conn:
        present = conn.execute("SELECT count(*) FROM lots WHERE lot_code = ANY(%s)",
                               (codes,)).fetchone()[0]
    checks.append(Check("every 201 is a legacy lot row, already in `lots`",
                        len(codes) == 13 and all(legacy_lot_shape(a.body) for a in created)
                        and present == len(codes),
                        f"{len(codes)} answered 201, {present} in lots"))
    return checks


def settled_counts(url: str, patience: float = 10.0) -> tuple[int, int]:
    """`lots` rows and Lot.Registered events, once the projector has caught up with the
    appends of the requests wrk left in flight when it stopped."""
    deadline = time.monotonic() + patience
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute("SELECT count(*) FROM lots").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM ledger_events"
                                  " WHERE topic = 'ledger.lot:Lot.Registered'").fetchone()[0]
            if rows == events or time.monotonic() > deadline:
                return rows, events
            time.sleep(0.2)


# The races take a few seconds under load, and must end while wrk still posts.
MIN_LOAD_SECONDS = 8


def races_under_load(base: str, token: str, url: str, *, connections: int,
                     seconds: int) -> list[Check]:
    seconds = max(seconds, MIN_LOAD_SECONDS)
    prefix = f"RACE-{uuid.uuid4().hex[:8]}"
    load: dict[str, tuple[int, int]] = {}
    wrk_env = {"FLOWVIZ_TOKEN": token, "FLOWVIZ_PREFIX": f"{prefix}-W"}
    loader = threading.Thread(
        target=lambda: load.update(wrk=wrk(base, LUA, connections, seconds, wrk_env)))
    loader.start()
    time.sleep(seconds / 3)
    racer = Racer(base, token)
    try:
        checks = run_races(racer, url, prefix)
    finally:
        racer.client.close()
    racing_done = time.monotonic()
    loader.join()
    _, total, failed = load["wrk"]
    checks.append(Check("the races ran while wrk was posting",
                        time.monotonic() - racing_done > 0.5, f"wrk {total} requests"))
    checks.append(Check("no non-2xx answer to wrk's POSTs", failed == 0, f"{failed} of {total}"))
    rows, events = settled_counts(url)
    checks.append(Check("lots rows = Lot.Registered events", rows == events, f"{rows} = {events}"))
    return checks


def print_checks(checks: list[Check]) -> None:
    for check in checks:
        print(f"    {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.seen}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--email", default="admin@flowviz.com")
    parser.add_argument("--password", default=os.environ.get("FLOWVIZ_PASSWORD"))
    parser.add_argument("--duration", type=int, default=20,
                        help=f"seconds of POST load, at least {MIN_LOAD_SECONDS}")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("--database-url (or DATABASE_URL): the checks read the legacy tables")
    login = {"email": args.email} | ({"password": args.password} if args.password else {})
    answer = httpx.post(f"{args.base_url}/api/login", json=login)
    if answer.status_code != 200:
        sys.exit(f"login as {args.email}: {answer.status_code} {answer.text}")
    checks = races_under_load(args.base_url, answer.json()["token"], args.database_url,
                              connections=args.connections, seconds=args.duration)
    print_checks(checks)
    sys.exit(0 if all(c.passed for c in checks) else 1)


if __name__ == "__main__":
    main()
