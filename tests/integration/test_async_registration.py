"""Registering lots from an event loop, as the API's hot POST does: no thread per request.

A raw lot needs nothing loaded, so it is built on the loop's own thread and awaits the
group commit there; everything that has to read (parents, telling a clash from a taken
code) goes through the blocking path the caller hands in. The invariants of the thread
path hold unchanged.
"""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from ledger import group_commit
from ledger.appends import Append
from ledger.commands import InputRef, NewLot
from ledger.errors import LotCodeAlreadyExists
from ledger.group_commit import _wake
from ledger.lot import LotCode
from ledger.values import SYSTEM_ACTOR_ID
from tests.integration.event_log import event_log
from tests.integration.faults import losing_the_first_answer
from tests.integration.lots import register


def log_of(container) -> list[tuple]:
    """(position, originator, topic) of every event, in log order."""
    return [(row[0], row[1], row[3]) for row in event_log(container)]


class CountingBlockingRuns:
    """The caller's way of running blocking work, counting how often the ledger needed it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, call):
        self.calls += 1
        return await asyncio.get_running_loop().run_in_executor(None, call)


def test_a_raw_lot_registered_from_an_event_loop_is_committed_when_the_call_returns(
    container, ledger
):
    blocking = CountingBlockingRuns()

    committed = asyncio.run(
        ledger.register_lot_async(
            NewLot("RAW-BEEF-1", "RAW", weight_kg=Decimal("120.5")),
            actor_id=SYSTEM_ACTOR_ID, run_blocking=blocking,
        )
    )

    assert blocking.calls == 0  # built and appended on the loop's thread
    log = log_of(container)
    assert [row[2].rsplit(".", 1)[-1] for row in log] == ["Registered", "Claimed"]
    assert committed.position == log[-1][0]
    lot = ledger.find_lot_by_code("RAW-BEEF-1")
    assert lot.id == committed.aggregate.id and lot.weight_kg == Decimal("120.5")
    assert ledger.verify().intact


def test_terminals_on_one_event_loop_racing_for_one_code_get_one_lot(container, ledger):
    blocking = CountingBlockingRuns()
    appends_before = ledger.recorder.stats.appends

    async def eight_terminals():
        return await asyncio.gather(
            *[
                ledger.register_lot_async(
                    NewLot("MIX-7", "MIX"), actor_id=SYSTEM_ACTOR_ID, run_blocking=blocking
                )
                for _ in range(8)
            ],
            return_exceptions=True,
        )

    outcomes = asyncio.run(eight_terminals())

    won = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(won) == 1, outcomes
    assert all(isinstance(e, LotCodeAlreadyExists) for e in refused), refused
    assert blocking.calls == 7  # each loser's clash was told apart on the blocking path
    assert ledger.recorder.stats.appends - appends_before == 8  # and none appended again
    claims = [row for row in log_of(container) if row[1] == LotCode.id_for("MIX-7")]
    assert len(claims) == 1
    assert ledger.find_lot_by_code("MIX-7").id == won[0].aggregate.id


def test_a_mix_made_of_raw_beef_takes_the_blocking_path_and_draws_the_beef(container, ledger):
    register(ledger, "RAW-BEEF-1", "RAW", "100")
    blocking = CountingBlockingRuns()

    committed = asyncio.run(
        ledger.register_lot_async(
            NewLot("MIX-1", "MIX", inputs=(InputRef(Decimal(30), lot_code="RAW-BEEF-1"),)),
            actor_id=SYSTEM_ACTOR_ID, run_blocking=blocking,
        )
    )

    assert blocking.calls == 1
    assert committed.aggregate.lot_code == "MIX-1"
    assert ledger.find_lot_by_code("RAW-BEEF-1").consumed_kg == Decimal(30)


def test_loop_callers_and_thread_callers_take_turns_at_one_gap_free_log(container, ledger):
    """A receiving dock posts from the event loop while a scale integration posts from
    threads: their two writers take turns at the log's lock, every lot commits once, at a
    position of its own, appends share commits, and the hash chain stays whole."""
    batches_before = ledger.recorder.stats.batches

    def scale(n: int) -> None:
        for i in range(10):
            register(ledger, f"SCALE-{n}-{i}", "RAW", "10")

    async def dock() -> list:
        return await asyncio.gather(
            *[
                ledger.register_lot_async(NewLot(f"DOCK-{i}", "RAW"), actor_id=SYSTEM_ACTOR_ID)
                for i in range(60)
            ]
        )

    threads = [threading.Thread(target=scale, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    docked = asyncio.run(dock())
    for thread in threads:
        thread.join(30)

    positions = [c.position for c in docked]
    assert len(set(positions)) == 60
    registered = [row for row in log_of(container) if row[2].endswith("Lot.Registered")]
    assert len(registered) == 60 + 40
    appends = 60 + 40
    batches = ledger.recorder.stats.batches - batches_before
    assert batches < appends  # some appends shared a commit
    assert ledger.verify().intact


def test_a_caller_that_gives_up_waiting_still_has_its_lot_committed(container, ledger):
    """The terminal's connection drops while the append is queued: the server carries on,
    and the lot is recorded all the same, as it would be for a thread that stopped
    listening."""

    async def post_then_hang_up() -> UUID | None:
        new = NewLot("RAW-DROPPED", "RAW", lot_id=UUID(int=7))
        task = asyncio.create_task(ledger.register_lot_async(new, actor_id=SYSTEM_ACTOR_ID))
        await asyncio.sleep(0)  # the task builds the lot and queues its append
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the loop keeps serving others meanwhile
            lot = ledger.find_lot_by_code("RAW-DROPPED")
            if lot is not None:
                return lot.id
            await asyncio.sleep(0.02)
        return None

    assert asyncio.run(post_then_hang_up()) == UUID(int=7)


def test_callers_on_an_event_loop_are_committed_without_a_wake_up_from_another_thread(
    container, ledger
):
    """Every wake-up from another thread writes to the loop's self-pipe and hands the
    interpreter lock across: the loop's own writer task needs neither."""

    class CountingLoop(asyncio.SelectorEventLoop):
        wakes = 0

        def call_soon_threadsafe(self, *args, **kwargs):
            CountingLoop.wakes += 1
            return super().call_soon_threadsafe(*args, **kwargs)

    async def dock() -> list:
        return await asyncio.gather(
            *[
                ledger.register_lot_async(NewLot(f"DOCK-{i}", "RAW"), actor_id=SYSTEM_ACTOR_ID)
                for i in range(20)
            ]
        )

    batches_before = ledger.recorder.stats.batches
    with asyncio.Runner(loop_factory=CountingLoop) as runner:
        docked = runner.run(dock())

    assert CountingLoop.wakes == 0
    assert len({c.position for c in docked}) == 20
    assert ledger.recorder.stats.batches - batches_before < 20  # and they shared commits
    assert ledger.verify().intact


def test_a_loop_full_of_callers_commits_in_two_halves_that_overlap(container, ledger):
    """Sixteen terminals post at once. Were they one batch, the loop would idle while it
    commits and the database while they build their next lots: the writer sends two halves,
    the second queueing for the table lock while the first commits, and the log stays
    gap-free."""
    from ledger import loop_writer  # noqa: PLC0415 - its bound on batches in flight

    seen_in_flight = []

    async def sixteen_terminals() -> list:
        writer = ledger.recorder._loop_writer(asyncio.get_running_loop())
        calls = [
            ledger.register_lot_async(NewLot(f"LINE-{i}", "RAW"), actor_id=SYSTEM_ACTOR_ID)
            for i in range(16)
        ]
        gathered = asyncio.gather(*calls)
        while not writer._in_flight:
            await asyncio.sleep(0)
        seen_in_flight.append(len(writer._in_flight))
        return await gathered

    stats = ledger.recorder.stats
    batches_before, appends_before = stats.batches, stats.appends
    committed = asyncio.run(sixteen_terminals())

    assert seen_in_flight == [loop_writer.IN_FLIGHT] == [2]
    assert (stats.batches - batches_before, stats.appends - appends_before) == (2, 16)
    positions = [row[0] for row in log_of(container)]
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    assert len({c.position for c in committed}) == 16
    assert ledger.verify().intact


def test_a_registration_whose_commit_answer_was_lost_gets_its_own_lot(
    container, ledger, monkeypatch
):
    """The terminal must not be told that its own new lot's code is taken, nor that
    nothing happened: the same events are sent again, clash with themselves, and the
    caller gets the lot it registered, recorded once."""
    lost = losing_the_first_answer(monkeypatch)

    committed = asyncio.run(
        ledger.register_lot_async(NewLot("RAW-ANSWER-LOST", "RAW"), actor_id=SYSTEM_ACTOR_ID)
    )

    assert lost, "the first batch committed and its answer was dropped"
    assert committed.aggregate.lot_code == "RAW-ANSWER-LOST"
    assert committed.position >= max(lost[0])
    assert ledger.find_lot_by_code("RAW-ANSWER-LOST").id == committed.aggregate.id
    topics = [row[2].rsplit(".", 1)[-1] for row in log_of(container)]
    assert topics.count("Registered") == 1 and topics.count("Claimed") == 1
    assert ledger.verify().intact


def test_a_registration_whose_connection_broke_before_the_commit_is_committed_on_retry(
    container, ledger, database_url
):
    """A failover cut the writer's connection while it was idle: the first send fails and
    nothing is recorded; the second, on a new connection, records the lot."""
    import psycopg  # noqa: PLC0415

    stats = ledger.recorder.stats

    async def register_after_the_cut() -> tuple:
        first = await ledger.register_lot_async(NewLot("RAW-BEFORE-CUT", "RAW"), actor_id=None)
        with psycopg.connect(database_url, autocommit=True) as admin:
            cut = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'flowviz-loop-writer'"
                " AND datname = current_database()"
            ).fetchone()[0]
        assert cut >= 1
        assert first.aggregate.lot_code == "RAW-BEFORE-CUT"
        batches_before = stats.batches
        after = await ledger.register_lot_async(NewLot("RAW-AFTER-CUT", "RAW"), actor_id=None)
        return after, stats.batches - batches_before

    after, batches = asyncio.run(register_after_the_cut())

    assert batches == 2  # the one that met the cut connection, and the one that committed
    assert ledger.find_lot_by_code("RAW-AFTER-CUT").id == after.aggregate.id
    assert ledger.verify().intact


def test_a_loop_writer_connection_whose_prepare_failed_is_closed_and_replaced(
    container, ledger, monkeypatch
):
    import psycopg  # noqa: PLC0415

    from ledger.prepared_append import PreparedAppend  # noqa: PLC0415

    prepare, opened = PreparedAppend.prepare_async, []

    async def breaking_the_first(self, conn):
        opened.append(conn)
        if len(opened) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        await prepare(self, conn)

    monkeypatch.setattr(PreparedAppend, "prepare_async", breaking_the_first)

    committed = asyncio.run(
        ledger.register_lot_async(NewLot("RAW-PREPARE-BROKE", "RAW"), actor_id=None)
    )

    assert len(opened) == 2
    assert opened[0].closed
    assert ledger.find_lot_by_code("RAW-PREPARE-BROKE").id == committed.aggregate.id
    topics = [row[2].rsplit(".", 1)[-1] for row in log_of(container)]
    assert topics == ["Registered", "Claimed"]

def test_the_writer_thread_wakes_every_thread_caller_of_its_batch():
    callers = [Append([]) for _ in range(3)]

    _wake(callers)

    assert all(c.done._lock.acquire(blocking=False) for c in callers)


class WriterThreadDiary:
    """What the writer thread does, in order: each batch it sends and each batch it wakes.
    Arrivals are scripted: while the first batch is being sent, more callers queue up."""

    def __init__(self, ledger, monkeypatch, arriving: list[Append], *, break_first_send=False):
        self.order: list[tuple[str, int]] = []
        recorder = ledger.recorder
        send, wake = type(recorder)._send_appends, group_commit._wake

        def sending(self_, conn, appends):
            first = not self.order
            self.order.append(("sent", len(appends)))
            if first:
                for append in arriving:
                    recorder._queue.put(append)
                recorder._queue.put(None)  # and then the ledger closes
                if break_first_send:
                    raise psycopg.OperationalError("server closed the connection unexpectedly")
            send(self_, conn, appends)

        def waking(batch):
            self.order.append(("woken", len(batch)))
            wake(batch)

        monkeypatch.setattr(type(recorder), "_send_appends", sending)
        monkeypatch.setattr(group_commit, "_wake", waking)
        self.recorder = recorder

    def run_writer(self, first: Append) -> None:
        """The writer thread's loop, run here, from `first` queued until the ledger closes."""
        self.recorder._queue.put(first)
        try:
            self.recorder._write_until_closed()
        finally:
            self.recorder._drop_connection()


def raw_append(ledger, code: str) -> Append:
    return Append(ledger._raw_lot(NewLot(code, "RAW"), None).stored)


def test_the_writer_thread_sends_the_next_batch_before_waking_the_last_ones_callers(
    ledger, monkeypatch
):
    """Woken first, a committed batch's callers took the interpreter lock for their next
    registrations while the writer, back from the database, waited behind them to send
    the batch already queued. Now that batch goes out first; every caller is answered."""
    first, arriving = raw_append(ledger, "RAW-FIRST"), [
        raw_append(ledger, "RAW-SECOND-1"), raw_append(ledger, "RAW-SECOND-2")
    ]
    diary = WriterThreadDiary(ledger, monkeypatch, arriving)

    diary.run_writer(first)

    assert diary.order == [("sent", 1), ("sent", 2), ("woken", 1), ("woken", 2)]
    assert all(a.error is None and a.ids for a in [first, *arriving])
    assert ledger.find_lot_by_code("RAW-SECOND-2") is not None


def test_a_batch_whose_connection_broke_is_answered_before_the_next_is_sent(
    ledger, monkeypatch
):
    """A batch that failed with its connection has nothing to wait for: its callers hear
    at once, not after the writer has reconnected for the next batch."""
    first, arriving = raw_append(ledger, "RAW-BROKEN"), [raw_append(ledger, "RAW-AFTER")]
    diary = WriterThreadDiary(ledger, monkeypatch, arriving, break_first_send=True)

    diary.run_writer(first)

    assert diary.order == [("sent", 1), ("woken", 1), ("sent", 1), ("woken", 1)]
    assert isinstance(first.error, OperationalError) and first.ids is None
    assert arriving[0].error is None and arriving[0].ids
    assert ledger.find_lot_by_code("RAW-BROKEN") is None
    assert ledger.find_lot_by_code("RAW-AFTER") is not None
