"""Recall benchmark: a full downstream recall of a raw lot on a plant of N lots.

    DATABASE_URL=postgresql://... uv run python scripts/bench_recall.py [--lots 1000000]
        [--schema recall_bench] [--samples 200] [--seed 7] [--threads 24]

Fills the schema through the ledger with `flowviz demo generate` (only what is missing up
to --lots, so a rerun reuses the plant), projects it, starts `flowviz serve`, and times
GET /api/recall/{code} for --samples raw lots chosen by --seed. Against it, on the same
lots and read tables: the old backend's breadth-first walk, one query for a node's
children and one for its row per lot. The three are interleaved lot by lot, so a noisy
neighbour on a shared machine hits all of them alike. Exits 1 when the API's p95 is not
under --limit-ms (200), or when the walk and the API disagree on what a recall affects.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.cli import database  # noqa: E402
from api.composition import Container  # noqa: E402
from api.plant_generator import (  # noqa: E402
    analyze_read_tables,
    catch_up,
    default_prefix,
    generate_and_project,
)
from api.settings import get_settings  # noqa: E402
from ledger.values import SYSTEM_ACTOR_ID  # noqa: E402
from projections import genealogy  # noqa: E402
from projections.db import open_async_pool  # noqa: E402
from scripts.bench import free_port, percentile  # noqa: E402

USER = "recall.bench@flowviz.example"
CHILDREN = "SELECT child_lot_id, quantity_used_kg FROM lot_genealogy WHERE parent_lot_id = %s"
LOT = "SELECT * FROM lots WHERE id = %s"


def bfs_recall(conn: psycopg.Connection, code: str) -> tuple[int, int]:
    """The old backend: lots affected and queries it took."""
    root = conn.execute("SELECT * FROM lots WHERE lot_code = %s", (code,)).fetchone()
    seen, todo, queries = {root[0]}, deque([root[0]]), 1
    while todo:
        lot_id = todo.popleft()
        conn.execute(LOT, (lot_id,)).fetchone()
        children = conn.execute(CHILDREN, (lot_id,)).fetchall()
        queries += 2
        for child, _kg in children:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return len(seen) - 1, queries


def prepare(container: Container, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    """Makes sure the schema holds the plant and a user to log in with; returns a password."""
    timings: dict[str, float] = {}
    catch_up(container, lambda _position: None)
    with container.read_pool.connection() as conn:
        have = conn.execute("SELECT count(*) FROM lots").fetchone()[0]
    if have < args.lots:
        missing = args.lots - have
        # A rerun after an interrupted one must not reuse codes the first one took.
        prefix = default_prefix(args.seed) + (f"x{have}" if have else "")
        print(f"{args.schema}: {have} lots; generating {missing} more ...", flush=True)
        started = time.perf_counter()
        generated, projected = generate_and_project(
            container, missing, seed=args.seed, prefix=prefix, threads=args.threads
        )
        timings = {"generated": generated.seconds, "rate": generated.rate,
                   "projected": projected, "wall": time.perf_counter() - started}
    else:
        print(f"{args.schema}: {have} lots already, reusing them", flush=True)
    password = secrets.token_urlsafe(16)
    hashed = container.passwords.hash(password)
    ledger = container.ledger
    user = ledger.find_user_by_email(USER)
    if user is None:
        ledger.register_user(email=USER, full_name="Recall benchmark", role="AUDITOR",
                             password_hash=hashed, actor_id=SYSTEM_ACTOR_ID)
    else:
        ledger.change_password(user.id, hashed, actor_id=SYSTEM_ACTOR_ID)
    catch_up(container, lambda _position: None)
    analyze_read_tables(container)  # a plant loaded elsewhere may never have been analyzed
    return password, timings


def start_server(url: str, schema: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_SCHEMA": schema, "BCRYPT_ROUNDS": "4",
           "SECRET_KEY": secrets.token_urlsafe(48), "FLOWVIZ_PASSWORDLESS_LOGIN": "false"}
    return subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "serve",
         "--port", str(port), "--log-level", "warning"],
        env=env, cwd=ROOT,
    )


def wait_healthy(base: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the server exited while starting")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"the server did not answer within {timeout} s")


async def measure(base: str, token: str, conninfo: str, codes: list[str], warmup: list[str]):
    """Per lot: the API over HTTP, the same query and mass balance in-process, the walk."""
    results: dict[str, list[float]] = {"http": [], "server": [], "inproc": [], "bfs": []}
    affected: list[int] = []
    queries: list[int] = []
    mismatches: list[str] = []
    pool = await open_async_pool(conninfo, max_size=2, name="bench-recall")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
                for n, code in enumerate(warmup + codes):
                    started = time.perf_counter()
                    answer = await http.get(f"/api/recall/{code}")
                    http_ms = (time.perf_counter() - started) * 1000
                    if answer.status_code != 200:
                        sys.exit(f"GET /api/recall/{code}: {answer.status_code} {answer.text}")
                    summary = answer.json()["summary"]

                    started = time.perf_counter()
                    g = await genealogy.genealogy(pool, code, direction="downstream",
                                                  max_depth=genealogy.MAX_DEPTH)
                    genealogy.recall(g)
                    inproc_ms = (time.perf_counter() - started) * 1000

                    started = time.perf_counter()
                    walked, asked = bfs_recall(conn, code)
                    bfs_ms = (time.perf_counter() - started) * 1000
                    if n < len(warmup):
                        continue
                    for key, value in (("http", http_ms), ("server", summary["elapsed_ms"]),
                                       ("inproc", inproc_ms), ("bfs", bfs_ms)):
                        results[key].append(value)
                    affected.append(summary["affected_lots"])
                    queries.append(asked)
                    if walked != summary["affected_lots"]:
                        mismatches.append(f"{code}: API {summary['affected_lots']}, walk {walked}")
    finally:
        await pool.close()
    return results, affected, queries, mismatches


def main() -> None:  # noqa: PLR0915 - a script that reads top to bottom
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--schema", default="recall_bench")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=24)
    parser.add_argument("--limit-ms", type=float, default=200.0)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()

    settings = get_settings(database_url=args.database_url, database_schema=args.schema,
                            db_pool_size=args.threads, bcrypt_rounds=4)
    with database(settings) as settings:
        container = Container(settings, run_projector=False)
        try:
            password, timings = prepare(container, args)
            with container.read_pool.connection() as conn:
                total = conn.execute("SELECT count(*) FROM lots").fetchone()[0]
                raw = [r[0] for r in conn.execute(
                    "SELECT lot_code FROM lots WHERE lot_type = 'RAW' ORDER BY lot_code")]
            conninfo = container.conninfo
        finally:
            container.close()
        rng = random.Random(args.seed)  # noqa: S311 - a reproducible sample
        chosen = rng.sample(raw, min(len(raw), args.samples + args.warmup))
        warmup, codes = chosen[: args.warmup], chosen[args.warmup:]

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(str(settings.database_url), args.schema, port)
        try:
            wait_healthy(base, server)
            login = httpx.post(f"{base}/api/login", json={"email": USER, "password": password},
                               timeout=30)
            login.raise_for_status()
            print(f"measuring {len(codes)} recalls (+{len(warmup)} warm-up) ...", flush=True)
            results, affected, queries, mismatches = asyncio.run(
                measure(base, login.json()["token"], conninfo, codes, warmup)
            )
        finally:
            server.terminate()
            server.wait(30)

    def row(label: str, values: list[float]) -> str:
        p50, p95, p99 = (percentile(values, q) for q in (0.5, 0.95, 0.99))
        return f"{label:<44}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}"

    mean = sum(affected) / len(affected)
    print()
    if timings:
        print(f"generated in {timings['generated']:.0f} s ({timings['rate']:.0f} lots/s), "
              f"projected in {timings['projected']:.0f} s, {timings['wall']:.0f} s in all")
    print(f"plant: {total} lots, {len(raw)} raw; a recall affects {mean:.1f} lots on average "
          f"(max {max(affected)}); the walk needs {sum(queries) / len(queries):.0f} queries")
    print(f"{'downstream recall of a raw lot, ms':<44}{'p50':>9}{'p95':>9}{'p99':>9}")
    print(row("GET /api/recall (HTTP, client side)", results["http"]))
    print(row("  of it in the server (summary.elapsed_ms)", results["server"]))
    print(row("in-process: query + mass balance", results["inproc"]))
    print(row("per-node breadth-first walk (old backend)", results["bfs"]))
    ratios = [percentile(results["bfs"], q) / percentile(results["http"], q)
              for q in (0.5, 0.95, 0.99)]
    print(f"{'walk / HTTP':<44}" + "".join(f"{r:>9.1f}" for r in ratios))
    p95 = percentile(results["http"], 0.95)
    verdict = "PASS" if p95 < args.limit_ms else "FAIL"
    print(f"{verdict}: HTTP p95 {p95:.1f} ms, limit {args.limit_ms:.0f} ms")
    if mismatches:
        print(f"the walk and the API disagree on {len(mismatches)} recalls, e.g. {mismatches[:3]}")
    if p95 >= args.limit_ms or mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
