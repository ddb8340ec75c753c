"""The `flowviz` command line, run as the plant's admin runs it: in a separate process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from ledger.commands import InputRef, NewLot
from ledger.values import SYSTEM_ACTOR_ID
from projections.schema import READ_TABLES
from tests.integration.cli_process import CLI, cli_env, flowviz
from tests.served_uvicorn import free_port

PASSWORD = "walk-in freezer 7"


# --- users -------------------------------------------------------------------------------


def test_the_admin_adds_a_manager_who_can_then_log_in(db_env, make_container):
    """`users add` takes the password on stdin; the new manager's password then verifies."""
    result = flowviz(
        "users", "add", "qa.manager@plant.example", "--role", "MANAGER",
        "--full-name", "Quality Manager", env=db_env, stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "qa.manager@plant.example" in result.stdout

    container = make_container()
    user = container.ledger.find_user_by_email("qa.manager@plant.example")
    assert user is not None
    assert (user.role, user.full_name) == ("MANAGER", "Quality Manager")
    assert container.passwords.verify(PASSWORD, user.password_hash)
    assert not container.passwords.verify(PASSWORD + "!", user.password_hash)


@pytest.mark.parametrize("password", ["", "short", "7chars!"])
def test_a_too_short_password_is_refused_and_no_user_is_added(db_env, make_container, password):
    """A password under eight characters is refused before anything is recorded."""
    result = flowviz(
        "users", "add", "temp.worker@plant.example", "--role", "OPERATOR",
        env=db_env, stdin=password + "\n",
    )
    assert result.returncode != 0
    assert "at least 8 characters" in result.stderr
    assert make_container().ledger.find_user_by_email("temp.worker@plant.example") is None


def test_adding_the_same_email_twice_is_refused(db_env):
    """A second account for the same e-mail is refused with a plain message."""
    first = flowviz("users", "add", "dup@plant.example", "--role", "VIEWER",
                    env=db_env, stdin=PASSWORD + "\n")
    assert first.returncode == 0, first.stderr
    second = flowviz("users", "add", "dup@plant.example", "--role", "VIEWER",
                     env=db_env, stdin=PASSWORD + "\n")
    assert second.returncode != 0
    assert "Email already registered" in second.stderr
    assert "Traceback" not in second.stderr


# --- projections -------------------------------------------------------------------------


def register_plant_lots(container, prefix: str = "CLI") -> None:
    """Two raw lots mixed into a batch, plus a QC decision on the batch."""
    ledger = container.ledger
    for code, kg in (("BEEF", "200"), ("SPICE", "20.50")):
        ledger.register_lot(
            NewLot(lot_code=f"{prefix}-{code}", lot_type="RAW", weight_kg=Decimal(kg),
                   metadata_json='{"supplier": "Hof Meier", "cert": ["BIO", 7]}'),
            actor_id=SYSTEM_ACTOR_ID,
        )
    mix = ledger.register_lot(
        NewLot(
            lot_code=f"{prefix}-MIX",
            lot_type="MIX",
            weight_kg=Decimal("215.5"),
            inputs=(InputRef(quantity_used_kg=Decimal("195"), lot_code=f"{prefix}-BEEF"),
                    InputRef(quantity_used_kg=Decimal("20.5"), lot_code=f"{prefix}-SPICE")),
        ),
        actor_id=SYSTEM_ACTOR_ID,
    )
    from ledger.commands import NewQcDecision  # noqa: PLC0415

    ledger.record_qc_decision(
        NewQcDecision(lot_id=mix.aggregate.id, decision="HOLD",
                      notes="Awaiting salmonella swab result"),
        actor_id=SYSTEM_ACTOR_ID,
    )
    ledger.register_user(email="viewer@plant.example", full_name="Viewer", role="VIEWER",
                         password_hash=None, actor_id=SYSTEM_ACTOR_ID)


def snapshot(container) -> dict[str, list[tuple]]:
    tables = {}
    with container.read_pool.connection() as conn:
        for table in READ_TABLES:
            rows = conn.execute(SQL("SELECT * FROM {}").format(Identifier(table))).fetchall()
            tables[table] = sorted(rows, key=repr)
    return tables


def test_status_shows_the_projection_and_how_far_behind_it_is(db_env, make_container):
    """After projecting the morning's lots and recording two more, status reports the
    projected position, the log head and the lag between them."""
    container = make_container()
    register_plant_lots(container)
    projected = container.projector.catch_up()
    for code in ("LATE-1", "LATE-2"):
        container.ledger.register_lot(NewLot(lot_code=code), actor_id=SYSTEM_ACTOR_ID)

    result = flowviz("projections", "status", env=db_env)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if container.projector.name in line)
    head = container.ledger.recorder.max_notification_id()
    cells = [c.strip() for c in row.replace("│", "|").split("|") if c.strip()]
    assert head > projected  # each late lot is a lot event plus its code claim
    assert cells[:4] == [container.projector.name, str(projected), str(head), str(head - projected)]


def test_status_shows_a_projection_that_never_ran_as_all_behind(db_env, make_container):
    """A fresh install whose projector never started: status still lists the projection,
    at position 0, with the whole log as its lag."""
    container = make_container()
    register_plant_lots(container)

    result = flowviz("projections", "status", env=db_env)
    assert result.returncode == 0, result.stderr
    head = container.ledger.recorder.max_notification_id()
    rows = [line for line in result.stdout.splitlines() if container.projector.name in line]
    assert len(rows) == 1, result.stdout
    cells = [c.strip() for c in rows[0].replace("│", "|").split("|") if c.strip()]
    assert cells[:4] == [container.projector.name, "0", str(head), str(head)]


def test_rebuild_replays_the_log_into_identical_read_tables(db_env, make_container):
    """Rebuilding from the log gives back exactly the read tables the projector made."""
    container = make_container()
    register_plant_lots(container)
    container.projector.catch_up()
    before = snapshot(container)
    assert len(before["lots"]) == 3 and len(before["lot_genealogy"]) == 2

    result = flowviz("projections", "rebuild", env=db_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rebuilt" in result.stderr

    assert snapshot(container) == before


def test_rebuild_refuses_while_a_server_projects(db_env, make_container):
    """While a running server's projector holds the lock, rebuild refuses and leaves the
    read tables alone."""
    serving = make_container(run_projector=True)
    register_plant_lots(serving)
    serving.start()
    assert serving.runner is not None and serving.runner.active.wait(10)
    deadline = time.monotonic() + 10
    while serving.projector.position() < serving.ledger.recorder.max_notification_id():
        assert time.monotonic() < deadline, "projector did not catch up"
        time.sleep(0.05)
    before = snapshot(serving)

    result = flowviz("projections", "rebuild", env=db_env)
    assert result.returncode != 0
    assert "a projector is running" in result.stderr
    assert snapshot(serving) == before


# --- serve --demo ------------------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator:
    """Starts `flowviz serve` as a process; kills it, workers and all, if a test leaves it
    running: a worker outliving a failed test keeps its connections, and the next tests
    then find the database full."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str], port: int, log: Path, *extra: str) -> subprocess.Popen:
        with log.open("w") as out:
            process = subprocess.Popen(
                [*CLI, "serve", "--demo", "--port", str(port), "--log-level", "warning", *extra],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group outlives a leader that exited
        process.wait(10)


def wait_healthy(base: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not healthy within {timeout} s:\n{log.read_text()}")


def stop(process: subprocess.Popen, log: Path) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running 15 s after SIGTERM:\n{log.read_text()}")


def test_serve_demo_shows_the_doner_genealogy_and_stops_on_sigterm(db_env, serve, tmp_path):
    """The sales demo: start with demo data, log in by e-mail alone, trace the mix batch
    to its two raw lots and its finished good, then stop cleanly on SIGTERM."""
    port, log = free_port(), tmp_path / "serve.log"
    process = serve(db_env, port, log)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process, log, timeout=60)

    login = httpx.post(f"{base}/api/login", json={"email": "admin@flowviz.com"}, timeout=10)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    trace = httpx.get(f"{base}/api/traceability/MIX-BATCH-88", headers=headers, timeout=10)
    assert trace.status_code == 200, trace.text
    body = trace.json()
    assert [p["lot_code"] for p in body["parents"]] == ["RAW-BEEF-001", "RAW-SPICE-001"]
    assert [c["lot_code"] for c in body["children"]] == ["FG-DONER-X1"]

    assert stop(process, log) != -signal.SIGKILL
    assert "Traceback" not in log.read_text()


ACCESS_LINE = '"GET /api/health HTTP/1.1" 200'


@pytest.mark.parametrize(("extra", "logged"), [((), False), (("--access-log",), True)])
def test_requests_are_logged_one_line_each_only_when_asked(
    db_env, serve, tmp_path, extra, logged
):
    """At the default log level the server says it started, but a request leaves no line:
    at a scanner's rate the lines cost a quarter of a read's CPU. `--access-log` asks."""
    port, log = free_port(), tmp_path / "serve.log"
    process = serve(db_env, port, log, "--log-level", "info", *extra)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process, log, timeout=60)
    for _ in range(3):
        assert httpx.get(f"{base}/api/health", timeout=10).status_code == 200

    assert stop(process, log) != -signal.SIGKILL
    output = log.read_text()
    assert "Application startup complete" in output
    assert (ACCESS_LINE in output) is logged, output


@pytest.mark.parametrize("workers", [1, 2])
def test_the_workers_share_one_projector_beside_them_and_one_set_of_metrics(
    db_env, serve, tmp_path, database_url, schema, workers
):
    """Every lot is readable at once whichever worker answers, exactly one projector
    holds the lock, and any worker's /metrics counts all lots. The projector runs in the
    serving process itself, beside (not inside) the workers, a lone worker included.
    Pools asked too large for the server are cut down until all processes fit."""
    port, log = free_port(), tmp_path / "serve.log"
    process = serve({**db_env, "DB_POOL_SIZE": "5000"}, port, log, "--workers", str(workers))
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process, log, timeout=60)
    token = httpx.post(f"{base}/api/login", json={"email": "admin@flowviz.com"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
        for n in range(12):  # new connections, so that every worker takes its share
            with httpx.Client(base_url=base, headers=headers, timeout=10) as fresh:
                created = fresh.post("/api/lots", json={"lot_code": f"W-{n}", "lot_type": "RAW"})
                assert created.status_code == 201, created.text
                assert fresh.get(f"/api/traceability/W-{n}").status_code == 200
        scrapes = [http.get("/metrics").text for _ in range(6)]
        # Each worker's writer counts into the shared files within a refresh (1 s).
        appends = _await_sample(http, "flowviz_ledger_appends_total", at_least=12)
    assert all('flowviz_lots_registered_total{lot_type="RAW"} 12.0' in s for s in scrapes)
    assert appends >= 12

    with psycopg.connect(database_url, autocommit=True) as conn:
        holders = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = hashtext(%s)::oid",
            (f"flowviz:projector:{schema}:legacy_tables",),
        ).fetchall()
    assert holders == [(f"flowviz-projector:{process.pid}",)]
    stop(process, log)
    counted = f"{workers} worker{'s' * (workers > 1)} and the projector"
    assert re.search(rf"DB_POOL_SIZE 5000 -> \d+: {counted}", log.read_text())


def _await_sample(http: httpx.Client, name: str, at_least: float, timeout: float = 5) -> float:
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(rf"^{name} (\S+)$", http.get("/metrics").text, re.MULTILINE)
        value = float(match[1]) if match else 0.0
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_serve_demo_without_a_database_stops_its_embedded_postgres(serve, tmp_path):
    """On a laptop without DATABASE_URL the demo runs its own PostgreSQL, and SIGTERM
    takes that database down with the server."""
    port, log = free_port(), tmp_path / "serve.log"
    process = serve(cli_env(FLOWVIZ_DATA_DIR=str(tmp_path)), port, log)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process, log, timeout=180)
    pid_file = tmp_path / "pgdata" / "postmaster.pid"
    assert pid_file.exists(), "embedded PostgreSQL not running in FLOWVIZ_DATA_DIR"
    postgres_pid = int(pid_file.read_text().splitlines()[0])

    stop(process, log)

    deadline = time.monotonic() + 15
    while pid_file.exists() and _alive(postgres_pid):
        assert time.monotonic() < deadline, f"embedded PostgreSQL left running:\n{log.read_text()}"
        time.sleep(0.2)
    assert not _alive(postgres_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; it has no /proc status of a running process.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_the_admin_promotes_resets_and_finally_deactivates_a_user(db_env, make_container):
    """A shift lead becomes manager, gets a new password, then leaves the company."""
    email = "shift.lead@plant.example"
    assert flowviz("users", "add", email, "--role", "OPERATOR", env=db_env,
                   stdin=PASSWORD + "\n").returncode == 0

    promoted = flowviz("users", "set-role", email, "--role", "MANAGER", env=db_env)
    assert promoted.returncode == 0, promoted.stderr
    reset = flowviz("users", "set-password", email, env=db_env, stdin="new-freezer-code\n")
    assert reset.returncode == 0, reset.stderr
    container = make_container()
    user = container.ledger.find_user_by_email(email)
    assert user.role == "MANAGER"
    assert container.passwords.verify("new-freezer-code", user.password_hash)
    assert not container.passwords.verify(PASSWORD, user.password_hash)

    gone = flowviz("users", "deactivate", email, env=db_env)
    assert gone.returncode == 0, gone.stderr
    assert container.ledger.find_user_by_email(email).active is False


def test_changing_a_user_nobody_registered_fails_plainly(db_env):
    result = flowviz("users", "deactivate", "nobody@plant.example", env=db_env)
    assert result.returncode == 1
    assert "no user with e-mail nobody@plant.example" in result.stderr
    assert "Traceback" not in result.stderr
