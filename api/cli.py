"""The `flowviz` command line. Builds its objects through the same composition root."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.composition import Container
from api.embedded_db import EmbeddedPostgres
from api.settings import ConfigurationError, Settings, get_settings
from ledger.errors import LedgerError
from ledger.values import SYSTEM_ACTOR_ID, Role
from projections.db import free_connections
from projections.projector import ProjectorLock

app = typer.Typer(
    help="FlowViz Ledger: traceability as an immutable event log.", no_args_is_help=True
)
projections_app = typer.Typer(help="Inspect and rebuild the read side.", no_args_is_help=True)
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
ledger_app = typer.Typer(
    help="Audit the event log: replay, digest, verify.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")
app.add_typer(users_app, name="users")
app.add_typer(ledger_app, name="ledger")
console = Console(stderr=True)


def _exit_on_sigterm() -> None:
    # uvicorn re-raises the signal it caught once it has shut down; make SIGTERM unwind
    # through `finally` (stopping the embedded database) like Ctrl-C does.
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Uses DATABASE_URL, or starts the embedded PostgreSQL for as long as the block runs."""
    if settings.database_url:
        yield settings
        return
    embedded = EmbeddedPostgres(settings.flowviz_data_dir)
    console.print(f"DATABASE_URL not set: embedded PostgreSQL in {embedded.data_dir}")
    url = embedded.start()
    os.environ["DATABASE_URL"] = url  # uvicorn workers read their settings from the environment
    try:
        yield settings.model_copy(update={"database_url": url})
    finally:
        embedded.stop()


@contextlib.contextmanager
def _shared_metrics() -> Iterator[None]:
    """The workers and the projector beside them write metrics to one folder, so any
    worker's /metrics sums them all."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="flowviz-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


@contextlib.contextmanager
def _projector_beside(settings: Settings) -> Iterator[None]:
    """The projector runs in this process, which otherwise only watches over the workers:
    it gets an interpreter of its own instead of sharing one worker's with that worker's
    requests, and every worker waits on it alike. Its advisory lock still keeps any other
    projector (a second server, `flowviz project`) waiting."""
    if not settings.flowviz_run_projector:
        yield
        return
    before = os.environ.get("FLOWVIZ_RUN_PROJECTOR")
    os.environ["FLOWVIZ_RUN_PROJECTOR"] = "false"  # read by the workers' settings
    container = Container(settings, run_projector=True)
    container.start()
    try:
        yield
    finally:
        container.close()
        if before is None:
            del os.environ["FLOWVIZ_RUN_PROJECTOR"]
        else:
            os.environ["FLOWVIZ_RUN_PROJECTOR"] = before


MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """A worker per core but one, which the projector's process and PostgreSQL share. Each
    event loop gathers what its requests ask at once into one batch (appends, reads, the
    projector's notifications), so fewer workers make bigger, cheaper batches as long as
    none runs out of core: on two cores one worker served 1.09-1.24x the POSTs of two, at
    15-22% less CPU each (5 alternated pairs), and 1.18x and 1.31x the traceability reads
    (2 pairs). Measured on two cores only. At most four by default, so that a large
    machine does not open a set of pools per core unasked (`--workers N` for more)."""
    return max(1, min((os.cpu_count() or 1) - 1, MAX_DEFAULT_WORKERS))


# Connections beyond the pools: each worker's two loop-writer connections, its writer
# thread's and its watermark listener, and the projector's lock (its listener comes from
# its ledger pool).
_WORKER_OWN = 4
_PROJECTOR_OWN = 1


def pool_size_within(free: int, workers: int, projector_beside: bool, wanted: int) -> int:
    """The largest pool size up to `wanted` (and at least 2) with which every process fits
    in `free` connections: each worker three pools (the ledger's, the read side's, its
    event loop's reads) and its own four, and the projector's process, when it runs
    beside the workers, two pools; the projector's lock once either way."""
    fixed = workers * _WORKER_OWN + _PROJECTOR_OWN
    pools = workers * 3 + (2 if projector_beside else 0)
    return max(2, min(wanted, (free - fixed) // pools))


def _fit_pools(settings: Settings, workers: int) -> Settings:
    """Four workers with the default pools could ask for more connections than
    PostgreSQL's default limit of 100, and requests would then fail under load."""
    assert settings.database_url is not None
    beside = settings.flowviz_run_projector
    try:
        free = free_connections(settings.database_url)
    except psycopg.OperationalError as e:
        reason = str(e).strip().splitlines()[0]
        console.print(f"[red]cannot reach PostgreSQL (DATABASE_URL): {escape(reason)}[/red]")
        raise typer.Exit(2) from None
    size = pool_size_within(free, workers, beside, settings.db_pool_size)
    if size == settings.db_pool_size:
        return settings
    console.print(
        f"DB_POOL_SIZE {settings.db_pool_size} -> {size}: {workers} worker{'s' * (workers > 1)}"
        f"{' and the projector' if beside else ''} must fit in the {free} connections"
        " PostgreSQL has free"
    )
    os.environ["DB_POOL_SIZE"] = str(size)  # read by the workers' settings
    return settings.model_copy(update={"db_pool_size": size})


def _settings() -> Settings:
    try:
        settings = get_settings()
        settings.check_startable()
    except ConfigurationError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(2) from None
    except ValidationError as e:
        # One line per variable, named as it is set in the environment.
        for error in e.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            console.print(f"[red]{name}: {escape(error['msg'])}[/red]")
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(help="HTTP worker processes (default: one per core but one, at most 4)"),
    ] = None,
    demo: Annotated[bool, typer.Option(help="Load demo data; allow e-mail-only login")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="A log line per request (on, a traceability read costs a quarter more CPU)",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API from worker processes, with the projector in this one."""
    import uvicorn  # noqa: PLC0415
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    from api.joined_writes import JoinedWritesProtocol  # noqa: PLC0415

    if workers is None:
        workers = default_workers()

    if demo:
        os.environ["FLOWVIZ_PASSWORDLESS_LOGIN"] = "true"
    settings = _settings()
    if settings.secret_key is None:
        # Shared by all workers of this run; tokens end with it. Production refuses this.
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
        settings = get_settings()
    _exit_on_sigterm()
    with database(settings) as settings:
        settings = _fit_pools(settings, workers)
        container = Container(settings, run_projector=False)
        try:
            if demo:
                from api.demo import load_demo  # noqa: PLC0415

                loaded = load_demo(container.ledger)
                console.print("demo data loaded" if loaded else "demo data already present")
        finally:
            container.close()
        with _shared_metrics(), _projector_beside(settings):
            config = uvicorn.Config(
                "api.main:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                # Off by default: every scanner's every read would be a line on stdout,
                # and the ledger's events already say who did what. /metrics counts them.
                access_log=access_log,
                http=JoinedWritesProtocol,
            )
            # uvicorn serves a lone worker in its own process, where the projector would
            # share that worker's interpreter lock: its supervisor spawns one instead.
            Multiprocess(config, sockets=[config.bind_socket()]).run()


@app.command()
def project() -> None:
    """Run the projector alone (for deployments with several API processes)."""
    _exit_on_sigterm()
    with database(_settings()) as settings:
        container = Container(settings, run_projector=True)
        container.start()
        console.print("projector running; Ctrl-C to stop")
        try:
            threading.Event().wait()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            container.close()


@projections_app.command("status")
def projections_status() -> None:
    """Show each projection's position in the event log and how far behind it is."""
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        try:
            statuses = container.read_model.projection_status(container.events_table)
        finally:
            container.close()
    table = Table("projection", "position", "log head", "lag (events)", "updated at")
    for s in statuses:
        updated = s.updated_at.isoformat() if s.updated_at else "-"
        table.add_row(s.name, str(s.position), str(s.head), str(s.lag), updated)
    Console().print(table)


@projections_app.command("rebuild")
def projections_rebuild() -> None:
    """Replay the whole event log into empty read tables (stop serving projectors first)."""
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        projector = container.projector
        try:
            with ProjectorLock(container.conninfo, projector.lock_key) as lock:
                if not lock.try_acquire():
                    console.print("[red]a projector is running (flowviz serve/project): "
                                  "stop it, then rebuild[/red]")
                    raise typer.Exit(1)
                total = container.ledger.recorder.max_notification_id() or 0
                with Progress(
                    TextColumn("rebuilding {task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=console,
                ) as progress:
                    task = progress.add_task(projector.name, total=total)
                    position = projector.rebuild(
                        lambda _n, pos: progress.update(task, completed=pos)
                    )
                    progress.update(task, completed=total)
                console.print(f"rebuilt {projector.name} up to position {position}")
        finally:
            container.close()


MIN_PASSWORD_LENGTH = 8


def _read_password() -> str:
    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        console.print(f"[red]password must have at least {MIN_PASSWORD_LENGTH} characters[/red]")
        raise typer.Exit(2)
    return password


@users_app.command("add")
def users_add(
    email: str,
    role: Annotated[Role, typer.Option(help="Role of the new user")],
    full_name: Annotated[str | None, typer.Option(help="Display name")] = None,
) -> None:
    """Add a user; the password is read from stdin, or prompted for on a terminal."""
    password = _read_password()
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        try:
            committed = container.ledger.register_user(
                email=email,
                full_name=full_name,
                role=role.value,
                password_hash=container.passwords.hash(password),
                actor_id=SYSTEM_ACTOR_ID,
            )
        except LedgerError as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from None
        finally:
            container.close()
    Console().print(f"user {email} added with id {committed.aggregate.id}")


def _change_user(email: str, change) -> None:
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        try:
            user = container.ledger.find_user_by_email(email)
            if user is None:
                console.print(f"[red]no user with e-mail {email}[/red]")
                raise typer.Exit(1)
            change(container, user.id)
        except LedgerError as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from None
        finally:
            container.close()


@users_app.command("set-role")
def users_set_role(
    email: str, role: Annotated[Role, typer.Option(help="The user's new role")]
) -> None:
    """Change a user's role (takes effect on their next request)."""
    _change_user(
        email,
        lambda c, user_id: c.ledger.change_role(user_id, role.value, actor_id=SYSTEM_ACTOR_ID),
    )
    Console().print(f"user {email} is now {role.value}")


@users_app.command("set-password")
def users_set_password(email: str) -> None:
    """Set a user's password, read from stdin or prompted for on a terminal."""
    password = _read_password()
    _change_user(
        email,
        lambda c, user_id: c.ledger.change_password(
            user_id, c.passwords.hash(password), actor_id=SYSTEM_ACTOR_ID
        ),
    )
    Console().print(f"password of {email} changed")


@users_app.command("deactivate")
def users_deactivate(email: str) -> None:
    """Deactivate a user: no more logins, and their tokens stop working."""
    _change_user(
        email, lambda c, user_id: c.ledger.deactivate_user(user_id, actor_id=SYSTEM_ACTOR_ID)
    )
    Console().print(f"user {email} deactivated")


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        console.print(
            f"[red]--as-of must be ISO 8601 with a zone (2026-03-01T12:00:00Z): {text!r}[/red]"
        )
        raise typer.Exit(2)
    return value


@ledger_app.command("replay")
def ledger_replay(
    lot_code: str,
    as_of: Annotated[
        str | None, typer.Option(help="Only events recorded up to this instant")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON instead")] = False,
) -> None:
    """Replay a lot's events, with their hashes, and show the state they rebuild."""
    from api import history_shapes  # noqa: PLC0415

    when = _as_of(as_of)
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        try:
            history = container.ledger.lot_history(lot_code, when)
        except LedgerError as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from None
        finally:
            container.close()
    body = history_shapes.history(history)
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    table = Table("version", "type", "recorded at", "actor", "data", "hash", title=lot_code)
    for event in body["events"]:
        data = {k: v for k, v in event["data"].items() if v not in (None, [], "{}")}
        table.add_row(
            str(event["version"]), event["type"], event["recorded_at"],
            event["actor_id"] or "-", json.dumps(data, ensure_ascii=False),
            (event["hash"] or "NONE: not written by the ledger")[:16],
        )
    out = Console()
    out.print(table)
    lot = history.replay()
    if lot is not None:
        out.print(
            f"state after replay: qc_status={lot.qc_status or '-'} weight_kg={lot.weight_kg}"
            f" consumed_kg={lot.consumed_kg} remaining_kg={lot.remaining_kg}"
        )


@ledger_app.command("digest")
def ledger_digest() -> None:
    """Print a digest of the whole log: keep it outside the system, verify against it later."""
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        try:
            typer.echo(str(container.ledger.digest()))
        finally:
            container.close()


@ledger_app.command("verify")
def ledger_verify(
    digest: Annotated[
        str | None, typer.Option(help="A digest printed earlier by `ledger digest`")
    ] = None,
) -> None:
    """Recompute every hash chain and compare every snapshot with its events; exit 1 naming
    the first altered, removed or inserted event or altered snapshot."""
    from ledger.hash_chain import Digest  # noqa: PLC0415

    try:
        against = Digest.parse(digest) if digest is not None else None
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    with database(_settings()) as settings:
        container = Container(settings, run_projector=False)
        try:
            result = container.ledger.verify(against)
        finally:
            container.close()
    if not result.intact:
        console.print(f"[red]TAMPERED: first at {result.findings[0]}[/red]")
        for finding in result.findings[1:20]:
            console.print(f"  also {finding}")
        if len(result.findings) > 20:
            console.print(f"  ... and {len(result.findings) - 20} more")
        raise typer.Exit(1)
    checked = f", and it leads to digest position {against.position}" if against else ""
    Console().print(f"intact: {result.events} events in {result.streams} streams{checked}")


demo_app = typer.Typer(help="Demo data at plant scale.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("generate")
def demo_generate(
    lots: Annotated[int, typer.Option(min=0, help="How many lots to register")],
    seed: Annotated[int, typer.Option(help="Same seed, same plant")] = 1,
    prefix: Annotated[
        str | None, typer.Option(help="Run tag in every lot code (default: G<seed>)")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="Concurrent registrations")] = 24,
    project: Annotated[bool, typer.Option(help="Bring the read tables up to date after")] = True,
) -> None:
    """Register a plant (RAW -> DEB -> BULK -> MIX -> SKW -> FRZ -> FG) through the ledger."""
    from api.plant_generator import generate_and_project  # noqa: PLC0415

    with database(_settings()) as settings:
        # One connection per thread, or the threads queue for the pool instead of the log.
        pool_size = max(settings.db_pool_size, threads)
        container = Container(settings.model_copy(update={"db_pool_size": pool_size}),
                              run_projector=False)
        try:
            generated, projected = generate_and_project(
                container, lots, seed=seed, prefix=prefix, threads=threads, project=project,
                console=console,
            )
        except (LedgerError, ValueError) as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from None
        finally:
            container.close()
    Console().print(
        f"generated {generated.lots} lots and {generated.decisions} QC decisions"
        f" in {generated.seconds:.1f} s ({generated.rate:,.0f} lots/s)"
        + (f"; projected in {projected:.1f} s" if project else "")
    )


def main() -> None:
    app()
