"""A deterministic demo plant of N lots, written through the ledger like any other lots.

Production runs in waves (days). Each day every stage takes lots the stage before it made
on earlier days, oldest first: RAW -> DEB -> BULK -> MIX -> SKW -> FRZ -> FG, with fan-in
(a MIX of 2-4 BULK lots) and fan-out (a RAW lot feeding several DEB lots). The plan is made
in memory from the seed alone (ids included), so the same seed gives the same plant
whatever order the threads commit in.
"""

from __future__ import annotations

import json
import math
import queue
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ledger.application import Ledger
from ledger.commands import InputRef, NewLot, NewQcDecision
from ledger.values import SYSTEM_ACTOR_ID
from projections import schema
from projections.projector import ProjectorLock

if TYPE_CHECKING:
    from api.composition import Container


@dataclass(frozen=True)
class Stage:
    lot_type: str
    share: float  # of all lots
    inputs: tuple[int, int] = (0, 0)  # how many parents, min and max
    fan_out: float = 1.0  # consumers a parent is meant to have: sets the kg taken per input
    yield_range: tuple[float, float] = (1.0, 1.0)  # output kg / input kg
    temperature: tuple[float, float] = (1.0, 4.0)


STAGES = (
    Stage("RAW", 0.20),
    Stage("DEB", 0.20, (1, 3), 2.5, (0.62, 0.75)),  # bones and trim leave on deboning
    Stage("BULK", 0.15, (1, 3), 1.5, (0.98, 1.0)),
    Stage("MIX", 0.15, (2, 4), 3.0, (1.02, 1.08)),  # spices and water go in
    Stage("SKW", 0.12, (1, 2), 1.5, (0.97, 1.0)),
    Stage("FRZ", 0.10, (1, 2), 1.2, (0.98, 1.0), (-22.0, -18.0)),
    Stage("FG", 0.08, (1, 1), 4.0, (1.0, 1.0), (-20.0, -18.0)),  # boxes, see _take
)
SUPPLIERS = ("Hof Meier", "Agrar Schulte GmbH", "Landfleisch Nord", "Bauer Krämer", "EZG Süd")
LINES = {"RAW": (1,), "DEB": (2, 3), "BULK": (3,), "MIX": (4, 5), "SKW": (5, 6), "FRZ": (7,),
         "FG": (8, 9)}
AGE_OUT_WAVES = 5  # older stock has left the plant; keeps the in-memory pools small
HOLD_DAYS = 2  # a held lot is released (PASS) this many waves later
SMALLEST_REST = 25_00  # 0.01 kg: what is left of a lot is either swept up or at least this
BOX_MAX = 20_00  # FG boxes are 5-20 kg
QC_PASS, QC_HOLD, QC_FAIL = 0.25, 0.02, 0.01
HOLD_NOTES = "Awaiting micro swab result (Listeria)"
FAIL_NOTES = "Core temperature above limit at goods receipt; lot blocked and destroyed"


@dataclass(eq=False)  # identity: a window drops an exhausted lot by reference
class _Stock:
    """A committed (or planned-to-be) lot still available to the next stage."""

    lot_id: UUID
    cents: int  # weight in 0.01 kg: exact arithmetic without Decimal in the planner
    left: int
    wave: int


@dataclass(frozen=True)
class PlannedLot:
    lot_id: UUID
    code: str
    lot_type: str
    cents: int
    temperature: Decimal
    metadata_json: str
    inputs: tuple[tuple[UUID, int], ...]  # parent id, cents taken
    qc: str | None  # decision recorded right after the registration
    deps: tuple[UUID, ...] = ()  # tasks of the same wave that must commit first

    def run(self, ledger: Ledger) -> None:
        ledger.register_lot(
            NewLot(
                lot_id=self.lot_id,
                lot_code=self.code,
                lot_type=self.lot_type,
                weight_kg=_kg(self.cents),
                temperature_c=self.temperature,
                metadata_json=self.metadata_json,
                inputs=tuple(InputRef(_kg(c), lot_id=p) for p, c in self.inputs),
            ),
            actor_id=SYSTEM_ACTOR_ID,
        )
        if self.qc is not None:
            notes = {"HOLD": HOLD_NOTES, "FAIL": FAIL_NOTES}.get(self.qc)
            _decide(ledger, self.lot_id, self.qc, notes)


@dataclass(frozen=True)
class Release:
    """The PASS that ends a HOLD; nobody consumes the lot before it is committed."""

    lot_id: UUID
    deps: tuple[UUID, ...] = ()

    def run(self, ledger: Ledger) -> None:
        _decide(ledger, self.lot_id, "PASS", "Swab negative, released")


Task = PlannedLot | Release


def _decide(ledger: Ledger, lot_id: UUID, decision: str, notes: str | None) -> None:
    ledger.record_qc_decision(
        NewQcDecision(lot_id=lot_id, decision=decision, notes=notes), actor_id=SYSTEM_ACTOR_ID
    )


def _kg(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def lot_id_for(code: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"flowviz:demo-lot:{code}")


def default_prefix(seed: int) -> str:
    return f"G{seed}"


def wave_size(lots: int) -> int:
    # At least a dozen waves, so every stage of the seven-day pipeline gets made.
    return max(20, min(5000, lots // 12))


@dataclass
class Planner:
    lots: int
    seed: int = 1
    prefix: str | None = None
    rng: random.Random = field(init=False)
    pools: dict[str, deque[_Stock]] = field(init=False)
    numbers: dict[str, int] = field(init=False)
    carry: dict[str, float] = field(init=False)
    held: dict[int, list[tuple[str, _Stock]]] = field(init=False)
    planned: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - reproducible demo data, no secrets
        self.prefix = self.prefix or default_prefix(self.seed)
        self.pools = {s.lot_type: deque() for s in STAGES}
        self.numbers = dict.fromkeys(self.pools, 0)
        self.carry = dict.fromkeys(self.pools, 0.0)
        self.held = defaultdict(list)

    def waves(self) -> Iterator[list[Task]]:
        size, wave = wave_size(self.lots), 0
        while self.planned < self.lots:
            yield self._wave(wave, size)
            wave += 1

    def _wave(self, wave: int, size: int) -> list[Task]:
        tasks: list[Task] = []
        made: list[tuple[str, _Stock]] = []
        last_consumer: dict[UUID, UUID] = {}
        for lot_type, stock in self.held.pop(wave, ()):
            tasks.append(Release(stock.lot_id))
            made.append((lot_type, stock))
        for i, stage in enumerate(STAGES):
            wanted = size * stage.share + self.carry[stage.lot_type]
            count = min(int(wanted), self.lots - self.planned)
            self.carry[stage.lot_type] = wanted - int(wanted)
            window = self._window(STAGES[i - 1].lot_type, stage, count) if i else None
            for _ in range(count):
                if window is not None and not window:
                    break  # the stage before has nothing left today
                lot = self._lot(stage, window, wave, last_consumer)
                tasks.append(lot)
                stock = _Stock(lot.lot_id, lot.cents, lot.cents, wave)
                if lot.qc == "HOLD":
                    self.held[wave + HOLD_DAYS].append((stage.lot_type, stock))
                elif lot.qc != "FAIL":
                    made.append((stage.lot_type, stock))
        for lot_type, pool in self.pools.items():
            self.pools[lot_type] = deque(
                s for s in pool if s.left > 0 and s.wave >= wave - AGE_OUT_WAVES
            )
        for lot_type, stock in made:  # today's lots are there for tomorrow
            stock.wave = wave
            self.pools[lot_type].append(stock)
        return tasks

    def _window(self, source: str, stage: Stage, consumers: int) -> list[_Stock]:
        """The oldest stock, enough of it that a day's consumers rarely queue on one parent."""
        mean_inputs = sum(stage.inputs) / 2
        size = max(6, math.ceil(1.5 * consumers * mean_inputs / stage.fan_out))
        window: list[_Stock] = []
        for stock in self.pools[source]:
            if len(window) == size:
                break
            if stock.left >= (BOX_MAX if stage.lot_type == "FG" else 1):
                window.append(stock)
        return window

    def _lot(
        self, stage: Stage, window: list[_Stock] | None, wave: int,
        last_consumer: dict[UUID, UUID],
    ) -> PlannedLot:
        rng = self.rng
        self.numbers[stage.lot_type] += 1
        code = f"{stage.lot_type}-{self.prefix}-{self.numbers[stage.lot_type]:06d}"
        lot_id = lot_id_for(code)
        inputs: list[tuple[UUID, int]] = []
        if window is None:
            cents = rng.randint(500_00, 1500_00)
        else:
            parents = rng.sample(window, min(rng.randint(*stage.inputs), len(window)))
            inputs = [(parent.lot_id, self._take(stage, parent)) for parent in parents]
            taken = sum(c for _, c in inputs)
            cents = taken if stage.lot_type == "FG" else round(
                taken * rng.uniform(*stage.yield_range)
            )
            for parent in parents:
                if parent.left < (BOX_MAX if stage.lot_type == "FG" else 1):
                    window.remove(parent)
        deps = tuple(dict.fromkeys(last_consumer[p] for p, _ in inputs if p in last_consumer))
        for parent_id, _ in inputs:
            last_consumer[parent_id] = lot_id
        roll = rng.random()
        qc = ("FAIL" if roll < QC_FAIL else "HOLD" if roll < QC_FAIL + QC_HOLD
              else "PASS" if roll < QC_FAIL + QC_HOLD + QC_PASS else None)
        meta: dict[str, object] = {
            "location": f"Plant 1 / Line {rng.choice(LINES[stage.lot_type])}",
            "production_day": wave + 1,
        }
        if window is None:
            meta["supplier"] = rng.choice(SUPPLIERS)
        self.planned += 1
        return PlannedLot(
            lot_id=lot_id,
            code=code,
            lot_type=stage.lot_type,
            cents=max(cents, 1),
            temperature=Decimal(str(round(rng.uniform(*stage.temperature), 1))),
            metadata_json=json.dumps(meta),
            inputs=tuple(inputs),
            qc=qc,
            deps=deps,
        )

    def _take(self, stage: Stage, parent: _Stock) -> int:
        if stage.lot_type == "FG":
            take = self.rng.randint(5_00, BOX_MAX)  # one box; the window holds a full one
        else:
            want = round(parent.cents / stage.fan_out * self.rng.uniform(0.6, 1.4))
            # A rest too small for a batch of its own is swept into this take.
            small = parent.left - want < max(parent.cents // 50, SMALLEST_REST)
            take = parent.left if small else want
        parent.left -= take
        return take


@dataclass
class Generated:
    lots: int = 0
    decisions: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.lots / self.seconds if self.seconds else 0.0


def generate(  # noqa: PLR0913
    ledger: Ledger,
    lots: int,
    *,
    seed: int = 1,
    prefix: str | None = None,
    threads: int = 24,
    on_progress: Callable[[int], None] | None = None,
) -> Generated:
    """Registers `lots` lots, wave by wave. A wave consumes only lots of earlier waves, and
    within it the consumers of one parent go one after the other: they never clash on the
    parent's version, so nothing is retried."""
    planner = Planner(lots, seed, prefix)
    first = f"RAW-{planner.prefix}-000001"
    if lots and ledger.lot_code_taken(first):
        raise ValueError(f"{first} exists already: choose another --prefix or --seed")
    result = Generated()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads, thread_name_prefix="generate") as pool:
        for tasks in planner.waves():
            for task in _run_wave(ledger, pool, tasks, limit=threads * 4):
                if isinstance(task, PlannedLot):
                    result.lots += 1
                    result.decisions += task.qc is not None
                    if on_progress is not None:
                        on_progress(result.lots)
                else:
                    result.decisions += 1
    result.seconds = time.perf_counter() - started
    return result


def _run_wave(
    ledger: Ledger, pool: ThreadPoolExecutor, tasks: list[Task], *, limit: int
) -> Iterator[Task]:
    """Runs a wave's tasks concurrently, each only after the tasks it depends on."""
    waiting = {id(t): len(t.deps) for t in tasks}
    dependents: dict[UUID, list[Task]] = defaultdict(list)
    for t in tasks:
        for dep in t.deps:
            dependents[dep].append(t)
    ready = deque(t for t in tasks if not t.deps)
    done: queue.SimpleQueue[tuple[Task, Future[None]]] = queue.SimpleQueue()
    in_flight = 0
    while ready or in_flight:
        # A bounded number in flight: an error stops the run soon, and progress is smooth.
        while ready and in_flight < limit:
            task = ready.popleft()
            future = pool.submit(task.run, ledger)
            future.add_done_callback(lambda f, t=task: done.put((t, f)))
            in_flight += 1
        task, future = done.get()
        in_flight -= 1
        if future.exception() is not None:
            while in_flight:  # let the others finish before reporting
                done.get()
                in_flight -= 1
            raise future.exception()  # type: ignore[misc]
        if isinstance(task, PlannedLot):
            for child in dependents.pop(task.lot_id, ()):
                waiting[id(child)] -= 1
                if not waiting[id(child)]:
                    ready.append(child)
        yield task


def generate_and_project(  # noqa: PLR0913
    container: Container,
    lots: int,
    *,
    seed: int = 1,
    prefix: str | None = None,
    threads: int = 24,
    project: bool = True,
    console: Console | None = None,
) -> tuple[Generated, float]:
    """`generate` with progress bars, then the read tables brought up to the log's head.

    Returns what was generated and the seconds the projection took after it.
    """
    console = console or Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("generating lots", total=lots, rate="")
        started = time.perf_counter()

        def advance(done: int) -> None:
            if done % 100 == 0 or done == lots:  # rich's refresh is not free at 1000s/s
                rate = done / (time.perf_counter() - started)
                progress.update(task, completed=done, rate=f"{rate:,.0f} lots/s")

        generated = generate(container.ledger, lots, seed=seed, prefix=prefix,
                             threads=threads, on_progress=advance)
    if not project:
        return generated, 0.0
    started = time.perf_counter()
    with Progress(*columns, console=console) as progress:
        head = container.ledger.recorder.max_notification_id() or 0
        task = progress.add_task("projecting events", total=head, rate="")
        catch_up(container, lambda position: progress.update(task, completed=position))
    analyze_read_tables(container)
    return generated, time.perf_counter() - started


def analyze_read_tables(container: Container) -> None:
    with container.read_pool.connection() as conn:
        schema.analyze_read_tables(conn)


def catch_up(container: Container, progress: Callable[[int], None]) -> None:
    """Projects up to the log's head here, or waits while a running projector does it."""
    projector = container.projector
    head = container.ledger.recorder.max_notification_id() or 0
    with ProjectorLock(container.conninfo, projector.lock_key) as lock:
        if lock.try_acquire():
            projector.catch_up(lambda _n, position: progress(position))
            return
        while (position := projector.position()) < head:
            progress(position)
            time.sleep(0.5)
