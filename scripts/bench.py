"""Throughput benchmark: every figure is a ratio against a baseline measured in the same run.

    uv run python scripts/bench.py [--duration 10] [--connections 32] [--workers N]

--workers defaults to what `flowviz serve` starts on this machine.

Uses DATABASE_URL's server (else the embedded PostgreSQL) and creates a fresh database
for the run. HTTP load comes from wrk (Debian package `wrk`) in its own process; the
raw-SQL baselines from pgbench at the same concurrency.

(a) POST /api/lots vs a raw single-row INSERT loop      target >= 0.25
(b) GET /api/traceability vs the three legacy queries    target >= 0.98
(c) projection lag (event stamped -> applied) p50/p99 during (a)     target p99 < 100 ms
(d) ledger-level appends vs the library's default recorder            target >= 10x
    (16 threads calling the ledger; and 16 tasks on one event loop, as POST appends)
(e) peak RSS of each server process                                   target < 300 MB
(f) GET /api/health, which touches no database: the ceiling of the HTTP stack itself
(g) CPU per request during (a), (b) and (f): server, PostgreSQL and load generator. What a
    request costs in CPU bounds its rate on this machine's cores, whatever the latency.
(h) the first issue's races and contract under POST load (scripts/races_under_load.py):
    one 201 per lot code, no overdraw, no draw from a lot on HOLD, 201 = rows = events.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "scripts" / "bench"
sys.path.insert(0, str(ROOT))

# Siblings in scripts/: Python puts the folder of the script it runs on the path.
from ledger_load import register_raw_lots  # noqa: E402
from races_under_load import (  # noqa: E402
    MIN_LOAD_SECONDS,
    print_checks,
    races_under_load,
    settled_counts,
)
from wrk_load import wrk  # noqa: E402

from api.cli import default_workers  # noqa: E402
from ledger.application import Ledger  # noqa: E402
from ledger.commands import InputRef, NewLot  # noqa: E402
from ledger.event_store import postgres_env  # noqa: E402
from projections.projector import PROJECTED_CHANNEL  # noqa: E402

RAW_INSERT = """INSERT INTO bench_raw (lot_code, lot_type, weight_kg, temperature_c, metadata)
VALUES ('R-' || nextval('bench_raw_seq'), 'RAW', 100.5, 4, '{}');
"""
LEGACY_TRACE = """\\set i random(0, {count} - 1)
SELECT *, id AS cid FROM lots WHERE lot_code = 'MIX-' || :i \\gset
SELECT l.* FROM lot_genealogy g JOIN lots l ON l.id = g.parent_lot_id WHERE g.child_lot_id = ':cid';
SELECT l.* FROM lot_genealogy g JOIN lots l ON l.id = g.child_lot_id WHERE g.parent_lot_id = ':cid';
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_db(url: str, name: str) -> str:
    return make_conninfo(**{**conninfo_to_dict(url), "dbname": name})


def pgbench(url: str, script: str, clients: int, seconds: int) -> float:
    params = conninfo_to_dict(url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    args = ["pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", f.name]
    env = {**os.environ,
           "PGHOST": str(params.get("host") or "127.0.0.1"),
           "PGPORT": str(params.get("port") or 5432),
           "PGUSER": str(params.get("user") or "postgres"),
           "PGDATABASE": str(params["dbname"]),
           "PGPASSWORD": str(params.get("password") or "")}
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        # Most often too many connections: the server's pools plus these clients must fit
        # under max_connections, with no other server still holding its own.
        raise SystemExit(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return float(re.search(r"tps = ([\d.]+)", done.stdout).group(1))


class RssWatcher(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    if "python" in proc.name() or "flowviz" in proc.name():
                        rss = proc.memory_info().rss
                        self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)
                except psutil.Error:
                    pass


class CpuMeter:
    """CPU seconds used by the server's processes, by our own children (wrk, pgbench) and by
    everything else on the machine, mostly PostgreSQL (whose short-lived backends leave no
    process to ask), so that a run's cost per request can be read off beside its rate."""

    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)

    def snapshot(self) -> dict[str, float]:
        server = 0.0
        for proc in [self.server, *self.server.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                server += times.user + times.system
            except psutil.Error:
                pass
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        load = children.ru_utime + children.ru_stime
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return {"server": server, "load generator": load,
                "postgres and the rest": busy - server - load}

    @staticmethod
    def per_request_ms(before: dict[str, float], after: dict[str, float],
                       requests: int) -> dict[str, float]:
        return {k: 1000 * (after[k] - before[k]) / max(requests, 1) for k in before}


class LagSampler(threading.Thread):
    """Lag of each lot registered during the run: from its event's timestamp to the
    projector's commit notification of a position that covers it.

    It listens rather than polls: polling the log's head and the projector's position
    every 5 ms, as it once did, cost the server 6-12% of its POSTs per second (2
    alternated pairs). The event is stamped when the worker builds it, before the writer
    commits it, so each lag is an upper bound of commit -> visible."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.start_position = 0
        self.projected: list[tuple[float, int]] = []  # (received, position)
        self.listening = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"LISTEN {PROJECTED_CHANNEL}")
            self.start_position = conn.execute(
                "SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
            self.listening.set()
            while not self.stopping.is_set():
                for note in conn.notifies(timeout=0.1):
                    # The payload is "schema:projection:position".
                    self.projected.append((time.time(), int(note.payload.rsplit(":", 1)[1])))

    def lags_ms(self) -> list[float]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            stamped = conn.execute(
                "SELECT e.notification_id, extract(epoch FROM l.created_at)::float8"
                "  FROM ledger_events e JOIN lots l ON l.id = e.originator_id"
                " WHERE e.notification_id > %s AND e.topic = 'ledger.lot:Lot.Registered'"
                " ORDER BY e.notification_id", (self.start_position,)).fetchall()
        lags, j = [], 0
        for position, stamped_at in stamped:
            while j < len(self.projected) and self.projected[j][1] < position:
                j += 1
            if j == len(self.projected):
                break
            lags.append((self.projected[j][0] - stamped_at) * 1000)
        return lags


T = TypeVar("T")


def bracketed(baseline: Callable[[int], float], measure: Callable[[], T], seconds: int,
              cpu: CpuMeter) -> tuple[float, list[float], dict[str, float], T]:
    """Runs the baseline in two halves, one before `measure` and one after it; returns its
    rate over both, each half's rate, its CPU per request and what `measure` returned.

    These machines are shared: their speed drifts by a third within minutes, and a baseline
    measured all before (or all after) its counterpart put that drift into the ratio. Split
    around it, a steady drift weighs on both sides of the ratio alike."""
    halves = [max(seconds // 2, 1), max(seconds - seconds // 2, 1)]
    rates: list[float] = []
    spent: dict[str, float] = {}
    before = cpu.snapshot()
    rates.append(baseline(halves[0]))
    spent = _added(spent, before, cpu.snapshot())
    result = measure()
    before = cpu.snapshot()
    rates.append(baseline(halves[1]))
    spent = _added(spent, before, cpu.snapshot())
    done = sum(rate * half for rate, half in zip(rates, halves, strict=True))
    per_request = {k: 1000 * v / max(round(done), 1) for k, v in spent.items()}
    return done / sum(halves), rates, per_request, result


def _added(spent: dict[str, float], before: dict[str, float],
           after: dict[str, float]) -> dict[str, float]:
    return {k: spent.get(k, 0.0) + after[k] - before[k] for k in before}


# A baseline's halves further apart than this: the machine's own speed changed during the
# measure, so the speed its counterpart ran at is unknown (between the two only if it
# moved one way), and a ratio against their mean is a guess.
UNSTEADY = 0.2


def unsteady(halves: list[float], value: float, digits: int, of: str = "") -> str:
    """For a baseline whose halves are UNSTEADY apart, a warning with the ratio of `value`
    against each half; else ''."""
    low, high = min(halves), max(halves)
    if low <= 0:
        return "  UNSTEADY (a half measured nothing; rerun)"
    apart = high / low - 1
    if apart <= UNSTEADY:
        return ""
    return (f"  UNSTEADY ({apart:.0%} apart: the ratio{of} against either half"
            f" {value / high:.{digits}f} and {value / low:.{digits}f})")


def row(label: str, value: float, baseline: float, target: str, digits: int = 2) -> None:
    print(f"{label:<48}{value:>14.0f}{baseline:>12.0f}{value / baseline:>8.{digits}f}  {target}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ledger_rate(url: str, *, group_commit: bool, threads: int, seconds: float,
                event_loop: bool = False) -> tuple[float, dict | None]:
    """Registrations per second from `threads` concurrent callers: threads calling
    `register_lot`, or with `event_loop` as many tasks on one uvloop loop awaiting
    `register_lot_async`, as the API's POST does. For group commit also where its writer's
    time goes."""
    schema = f"bench_{'gc' if group_commit else 'lib'}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    ledger = Ledger(postgres_env(url, schema=schema, pool_size=threads, group_commit=group_commit))
    wal_sync_before = wal_sync_ms(url)
    deadline = time.perf_counter() + seconds
    cpu_before = process_cpu_seconds()
    started = time.perf_counter()
    counts = register_raw_lots(ledger, threads, event_loop=event_loop,
                               go_on=lambda _: time.perf_counter() < deadline)
    elapsed = time.perf_counter() - started
    cpu = process_cpu_seconds() - cpu_before
    rate = sum(counts) / elapsed
    stats = getattr(ledger.recorder, "stats", None)
    ledger.close()  # its connections close, so their function statistics are flushed
    if stats is None or not stats.batches:
        return rate, None
    time.sleep(0.5)
    with psycopg.connect(url, autocommit=True) as conn:
        function = conn.execute(
            "SELECT calls, total_time FROM pg_stat_user_functions WHERE schemaname = %s"
            " AND funcname LIKE %s", (schema, "%_append")
        ).fetchone()
    wal_sync = wal_sync_ms(url)
    return rate, {
        "batches": stats.batches, "appends": stats.appends, "busy": stats.busy_seconds,
        "elapsed": elapsed, "function_ms": function[1] / function[0] if function else None,
        # All threads of this process: callers, the writer, psycopg. Near one core means
        # the interpreter lock, not PostgreSQL, sets the rate.
        "cores": cpu / elapsed, "cpu_ms": 1000 * cpu / sum(counts),
        # Zero when the timing could not be turned on: unknown, not free.
        "wal_sync_ms": (wal_sync - wal_sync_before) / stats.batches
        if wal_sync and wal_sync_before is not None and wal_sync > wal_sync_before else None,
    }


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def python_per_registration_ms(seconds: float) -> float:
    """The ledger's own Python per registration, on the library's in-memory recorder: the
    part that the interpreter lock runs one at a time, however many threads call it."""
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        ledger.register_lot(NewLot(lot_code=f"P-{done}", weight_kg=Decimal(1)), actor_id=None)
        done += 1
    return 1000 * (time.perf_counter() - started) / done


def wal_sync_ms(url: str) -> float | None:
    """Milliseconds the whole server spent in WAL fsyncs (PostgreSQL 14+, with timing on)."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("SELECT wal_sync_time FROM pg_stat_wal").fetchone()[0]
    except psycopg.Error:
        return None


def track_timings(url: str, name: str) -> None:
    """Function and WAL timings for the run's database: what (d)'s breakdown reads."""
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("track_functions = 'pl'", "track_wal_io_timing = on"):
            try:
                conn.execute(f'ALTER DATABASE "{name}" SET {setting}')
            except psycopg.Error:  # not a superuser: the breakdown says n/a
                pass


def seed_genealogy(url: str, mixes: int) -> None:
    ledger = Ledger(postgres_env(url, pool_size=8))
    def one(i: int) -> None:
        raws = [f"RAW-{i}-{k}" for k in range(2)]
        for code in raws:
            ledger.register_lot(NewLot(lot_code=code, lot_type="RAW", weight_kg=Decimal(100)),
                                actor_id=None)
        mix_inputs = tuple(InputRef(Decimal(40), lot_code=c) for c in raws)
        ledger.register_lot(NewLot(lot_code=f"MIX-{i}", lot_type="MIX", weight_kg=Decimal(80),
                                   inputs=mix_inputs), actor_id=None)
        fg_inputs = (InputRef(Decimal(80), lot_code=f"MIX-{i}"),)
        ledger.register_lot(NewLot(lot_code=f"FG-{i}", lot_type="FG", weight_kg=Decimal(80),
                                   inputs=fg_inputs), actor_id=None)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(mixes)))
    ledger.close()


def main() -> None:  # noqa: PLR0915 - a script that reads top to bottom
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--mixes", type=int, default=300)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            package = "wrk" if tool == "wrk" else "postgresql-client"
            sys.exit(f"{tool} is needed: apt-get install {package}")

    embedded = None
    server_url = args.database_url
    if not server_url:
        from api.embedded_db import EmbeddedPostgres  # noqa: PLC0415
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="flowviz-bench-")))
        server_url = embedded.start()
    name = f"flowviz_bench_{int(time.time())}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_db(server_url, name)
    d, c = args.duration, args.connections
    results: dict[str, object] = {}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SEQUENCE bench_raw_seq; CREATE TABLE bench_raw"
                         " (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                         " lot_code text UNIQUE NOT NULL, lot_type text, weight_kg numeric,"
                         " temperature_c numeric, metadata jsonb,"
                         " created_at timestamptz NOT NULL DEFAULT now())")
        track_timings(server_url, name)
        print(f"(d) ledger appends, 16 threads, {d}s each; the library's recorder in two halves"
              " around them ...", flush=True)
        libs = [ledger_rate(url, group_commit=False, threads=16, seconds=d / 2)[0]]
        ours, writer = ledger_rate(url, group_commit=True, threads=16, seconds=d)
        on_loop, loop_writer = ledger_rate(url, group_commit=True, threads=16, seconds=d,
                                           event_loop=True)
        libs.append(ledger_rate(url, group_commit=False, threads=16, seconds=d / 2)[0])
        lib = sum(libs) / 2
        results["d"] = (ours, lib, libs)
        results["d_loop"] = (on_loop, loop_writer)
        if writer is not None:
            writer["python_ms"] = python_per_registration_ms(min(d, 3))
        results["writer"] = writer

        workers = args.workers or default_workers()
        print(f"starting server ({workers} HTTP worker{'s' * (workers > 1)}) ...", flush=True)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": uuid.uuid4().hex * 2,
               "BCRYPT_ROUNDS": "4"}
        server = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "serve", "--demo",
             "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
            env=env, cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        rss = RssWatcher(server.pid)
        cpu = CpuMeter(server.pid)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/api/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            login = httpx.post(f"{base}/api/login", json={"email": "admin@flowviz.com"})
            token = login.json()["token"]
            rss.start()
            print(f"seeding {args.mixes} MIX lots with parents and children ...", flush=True)
            seed_genealogy(url, args.mixes)

            print(f"(a) raw INSERT, pgbench -c {c}, {d}s in two halves around POST /api/lots,"
                  f" wrk -c {c}, {d}s ...", flush=True)
            with psycopg.connect(url, autocommit=True) as conn:
                lots_before = conn.execute("SELECT count(*) FROM lots").fetchone()[0]
            sampler = LagSampler(url)

            def post_lots() -> tuple[float, int, int, dict[str, float]]:
                sampler.start()
                sampler.listening.wait(10)
                before = cpu.snapshot()
                rate, total, failed = wrk(base, LUA / "post_lots.lua", c, d,
                                          {"FLOWVIZ_TOKEN": token, "FLOWVIZ_PREFIX": f"B{port}"})
                return rate, total, failed, cpu.per_request_ms(before, cpu.snapshot(), total)

            raw, raws, raw_cpu, (post_rate, post_total, post_failed, post_cpu) = bracketed(
                lambda seconds: pgbench(url, RAW_INSERT, c, seconds), post_lots, d, cpu)
            results["g"] = {"raw INSERT (pgbench)": raw_cpu, "POST /api/lots": post_cpu}
            time.sleep(1.0)
            sampler.stopping.set()
            sampler.join()
            lots_after, registered = settled_counts(url)
            results["a"] = (post_rate, raw, raws, post_total, post_failed, lots_after - lots_before)
            results["log"] = (lots_after, registered)
            results["c"] = sampler.lags_ms()

            print(f"(b) three legacy queries, pgbench -c {c}, {d}s in two halves around"
                  f" GET /api/traceability, wrk -c {c}, {d}s ...", flush=True)

            def get_trace() -> tuple[float, int, int, dict[str, float]]:
                before = cpu.snapshot()
                env = {"FLOWVIZ_TOKEN": token, "FLOWVIZ_MIX_COUNT": str(args.mixes)}
                rate, total, failed = wrk(base, LUA / "get_trace.lua", c, d, env)
                return rate, total, failed, cpu.per_request_ms(before, cpu.snapshot(), total)

            legacy_trace = LEGACY_TRACE.format(count=args.mixes)
            direct, directs, direct_cpu, traced = bracketed(
                lambda seconds: pgbench(url, legacy_trace, c, seconds), get_trace, d, cpu)
            trace_rate, trace_total, trace_failed, trace_cpu = traced
            results["g"]["3 legacy queries (pgbench)"] = direct_cpu
            results["g"]["GET /api/traceability"] = trace_cpu
            results["b"] = (trace_rate, direct, directs, trace_failed)
            # What bounds (a) and (b): the same HTTP stack answering without touching the
            # database at all. No endpoint of this server can be faster than this.
            print(f"(f) GET /api/health (no database), wrk -c {c}, {d}s ...", flush=True)
            before = cpu.snapshot()
            health_rate, health_total, health_failed = wrk(f"{base}/api/health", None, c, d, {})
            health_cpu = cpu.per_request_ms(before, cpu.snapshot(), health_total)
            results["g"]["GET /api/health"] = health_cpu
            results["f"] = (health_rate, health_failed)
            print(f"(h) the first issue's races during POST load, wrk -c {c},"
                  f" {max(d, MIN_LOAD_SECONDS)}s ...", flush=True)
            results["h"] = races_under_load(base, token, url, connections=c, seconds=d)
        finally:
            rss.stopping.set()
            server.terminate()
            server.wait(30)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.stop()

    post_rate, raw, raws, post_total, post_failed, lots_added = results["a"]
    trace_rate, direct, directs, trace_failed = results["b"]
    ours, lib, libs = results["d"]
    lags = results["c"]
    peak_mb = max(rss.peak.values(), default=0) / 2**20
    print()
    print(f"{'measure':<48}{'value':>14}{'baseline':>12}{'ratio':>8}  target")
    # Three decimals: 0.246 printed as 0.25 beside ">= 0.25" would read as reached.
    row("(a) POST /api/lots /s vs raw INSERT /s", post_rate, raw, ">= 0.25", digits=3)
    row("(b) GET traceability /s vs 3 queries /s", trace_rate, direct, ">= 0.98", digits=3)
    print(f"    baselines' halves, before and after: raw INSERT {raws[0]:,.0f} and"
          f" {raws[1]:,.0f}/s{unsteady(raws, post_rate, 3)}")
    print(f"    {'':<38}3 queries {directs[0]:,.0f} and {directs[1]:,.0f}/s"
          f"{unsteady(directs, trace_rate, 3)}")
    print(f"{'(c) projection lag p50 / p99 ms':<48}{percentile(lags, .5):>14.1f}"
          f"{percentile(lags, .99):>12.1f}{'':>8}  p99 < 100")
    on_loop, loop_writer = results["d_loop"]
    row("(d) ledger appends /s vs library default /s", ours, lib, ">= 10", digits=2)
    row("    16 tasks on one event loop, as POST appends", on_loop, lib, ">= 10", digits=2)
    print(f"    the library's halves, before and after: {libs[0]:,.0f} and {libs[1]:,.0f}/s"
          f"{unsteady(libs, ours, 2, of=' from 16 threads')}")
    writer = results["writer"]

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} ms"

    def batches(stats: dict) -> tuple[float, float, str]:
        """Registrations per batch, the share of the time a batch was in flight, ms a batch."""
        return (stats["appends"] / stats["batches"], stats["busy"] / stats["elapsed"],
                ms(1000 * stats["busy"] / stats["batches"]))

    if loop_writer is not None:
        per_batch, in_flight, batch_ms = batches(loop_writer)
        print(f"    from the event loop: {per_batch:.1f} registrations per batch, {in_flight:.2f}"
              f" batches in flight on average, {batch_ms} per batch; the process used"
              f" {loop_writer['cores']:.2f} cores, {ms(loop_writer['cpu_ms'])} of CPU per"
              " registration")
    if writer is not None:
        per_batch, busy, batch_ms = batches(writer)
        print(f"    group commit: {writer['batches']} batches of {per_batch:.1f} registrations, the"
              f" writer busy {busy:.0%} of the time; per batch {batch_ms} in the writer, of which"
              f" PostgreSQL's append function {ms(writer['function_ms'])}"
              f" and WAL fsync {ms(writer['wal_sync_ms'])}")
        print(f"    the ledger's Python per registration, one at a time under the interpreter lock:"
              f" {ms(writer['python_ms'])}, so at most {1000 / writer['python_ms']:,.0f}/s"
              " with a free database")
        print(f"    the appending process used {writer['cores']:.2f} cores of {os.cpu_count()}:"
              f" {ms(writer['cpu_ms'])} of CPU per registration (callers, writer, driver, thread"
              f" wake-ups), so at most {1000 / writer['cpu_ms']:,.0f}/s on one interpreter")
    print(f"{'(e) peak RSS per server process MB':<48}{peak_mb:>14.0f}{'':>12}{'':>8}  < 300")
    rows, events = results["log"]
    health_rate, health_failed = results["f"]
    row("(f) ceiling: GET /api/health /s vs 3 queries /s", health_rate, direct,
        "(bounds (a) and (b))")
    cores = os.cpu_count() or 1
    print(f"(g) CPU ms per request: server + load generator + PostgreSQL and the rest = total;"
          f" {cores} cores allow at most {cores} s of CPU per second:")
    for name, parts in results["g"].items():
        total = sum(parts.values())
        split = " + ".join(f"{v:.3f}" for v in parts.values())
        print(f"    {name:<26}{split} = {total:.3f} ms -> at most {1000 * cores / total:,.0f}/s")
    print("(h) races and contract under POST load:")
    print_checks(results["h"])
    print(f"non-2xx/socket errors: POST {post_failed}, GET {trace_failed}, health {health_failed}")
    print(f"POST 201 answers {post_total - post_failed}, lots added {lots_added} "
          f"(wrk drops up to {c} in-flight answers when it stops); "
          f"lots rows {rows} = Lot.Registered events {events}: {'yes' if rows == events else 'NO'}")


if __name__ == "__main__":
    main()
