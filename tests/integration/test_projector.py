"""The projector turns the event log into the read tables exactly once, in batches.

The scenario throughout: RAW beef is received, mixed into MIX lots, QC holds and
releases, finished goods (FG) are made, and plant staff log in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import Notification
from psycopg.pq import TransactionStatus

from ledger.commands import NewLot, NewQcDecision
from ledger.values import SYSTEM_ACTOR_ID
from projections.db import open_pool
from projections.handlers import HANDLERS, Op
from projections.projector import Projector, ProjectorRunner, apply_ops
from projections.schema import READ_TABLES, truncate_read_tables
from tests.integration.lots import register as register_lot


class Crash(RuntimeError):
    """The projector process dies after applying a batch, before its commit."""


class CountingProjector(Projector):
    """Remembers the size of every batch it applies (one transaction each)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[int] = []

    def apply_and_read_next(
        self, notifications: Sequence[Notification]
    ) -> tuple[int, list[Notification]]:
        self.batches.append(len(notifications))
        return super().apply_and_read_next(notifications)


def projector_like(container, cls: type[Projector] = Projector, **overrides: Any) -> Projector:
    """Another projector process on the same schema and projection name."""
    return cls(
        pool=container.read_pool,
        recorder=container.ledger.recorder,
        mapper=container.ledger.mapper,
        schema=container.settings.database_schema,
        render_lot=container.projector.render_lot,
        **overrides,
    )


def snapshot(container) -> dict[str, list[tuple]]:
    """Every read table, rows in a deterministic order."""
    with container.read_pool.connection() as conn:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in READ_TABLES
        }


def scalar(container, sql: str, *params: object) -> Any:
    with container.read_pool.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


def head(container) -> int:
    return scalar(container, f"SELECT coalesce(max(notification_id), 0) FROM"
                             f" {container.events_table}")


def all_notifications(container) -> list[Notification]:
    return container.ledger.recorder.select_notifications(start=1, limit=10_000)


# Metadata as the line sends it, so projection tests see it come through.
register = functools.partial(register_lot, metadata_json='{"line": 2, "supplier": "Estancia Sur"}')


def receive_and_mix(ledger) -> None:
    """RAW-BEEF-1 (100 kg) and RAW-BEEF-2 (80 kg) go into MIX-1."""
    register(ledger, "RAW-BEEF-1", "RAW", "100")
    register(ledger, "RAW-BEEF-2", "RAW", "80")
    register(ledger, "MIX-1", "MIX", "70", ("RAW-BEEF-1", "40"), ("RAW-BEEF-2", "30"))


def a_day_at_the_plant(ledger, after_each_step: Callable[[], object] = lambda: None) -> None:
    """Every kind of event the read side handles, and the ones it ignores."""
    users: dict[str, Any] = {}

    def raw():
        return ledger.find_lot_by_code("RAW-BEEF-1")

    def add_user(email: str, role: str) -> None:
        users[email] = ledger.register_user(
            email=email, full_name=None, role=role, password_hash="h1",
            actor_id=SYSTEM_ACTOR_ID,
        ).aggregate

    steps: list[Callable[[], object]] = [
        lambda: receive_and_mix(ledger),
        lambda: ledger.record_qc_decision(
            NewQcDecision(lot_id=raw().id, decision="HOLD", notes="Temperature excursion"),
            actor_id=None,
        ),
        lambda: ledger.record_qc_decision(
            NewQcDecision(lot_id=raw().id, decision="PASS"), actor_id=None
        ),
        lambda: register(ledger, "MIX-2", "MIX", None, ("RAW-BEEF-1", "60")),
        lambda: register(ledger, "FG-1", "FG", "70", ("MIX-1", "35"), ("MIX-2", "35")),
        lambda: add_user("qa@plant.example", "OPERATOR"),
        lambda: ledger.change_role(users["qa@plant.example"].id, "MANAGER", actor_id=None),
        lambda: ledger.change_password(users["qa@plant.example"].id, "h2", actor_id=None),
        lambda: ledger.record_login(users["qa@plant.example"].id),
        lambda: ledger.record_login(users["qa@plant.example"].id),
        lambda: add_user("temp@plant.example", "VIEWER"),
        lambda: ledger.deactivate_user(users["temp@plant.example"].id, actor_id=None),
    ]
    for step in steps:
        step()
        after_each_step()


# --- what the tables say ---------------------------------------------------------------


def test_the_read_tables_show_the_plant_as_recorded(container, ledger):
    a_day_at_the_plant(ledger)

    container.projector.catch_up()

    rows = snapshot(container)
    assert len(rows["lots"]) == 5
    assert len(rows["lot_genealogy"]) == len(rows["lot_edges"]) == 5
    assert [r[4] for r in sorted(rows["qc_decisions"], key=lambda r: r[8])] == ["HOLD", "PASS"]
    raw = ledger.find_lot_by_code("RAW-BEEF-1")
    assert scalar(container, "SELECT consumed_kg FROM lot_state WHERE lot_id = %s",
                  raw.id) == Decimal(100)
    assert scalar(container, "SELECT qc_status FROM lot_state WHERE lot_id = %s",
                  raw.id) == "PASS"
    assert scalar(container, "SELECT qc_decided_at FROM lot_state WHERE lot_id = %s",
                  raw.id) == raw.qc_history[-1].decided_at
    qa = ledger.find_user_by_email("qa@plant.example")
    assert scalar(container, "SELECT role FROM users WHERE id = %s", qa.id) == "MANAGER"
    assert scalar(container, "SELECT last_login FROM users WHERE id = %s",
                  qa.id) == qa.last_login
    assert scalar(container, "SELECT count(*) FROM user_state WHERE NOT active") == 1


# --- exactly once ----------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [500, 3], ids=["one-batch", "small-batches"])
def test_a_crash_between_apply_and_commit_loses_nothing_and_duplicates_nothing(
    container, ledger, batch_size
):
    receive_and_mix(ledger)
    crashes: list[int] = []

    def die_on_second_batch(fresh: list[Notification]) -> None:
        crashes.append(fresh[-1].id)
        if len(crashes) == (2 if batch_size == 3 else 1):
            raise Crash

    crashing = projector_like(container, batch_size=batch_size,
                              before_commit=die_on_second_batch)
    with pytest.raises(Crash):
        crashing.catch_up()

    committed = crashes[0] if batch_size == 3 else 0
    assert container.projector.position() == committed
    if committed == 0:
        assert all(rows == [] for rows in snapshot(container).values())
    else:
        # The first batch (RAW-BEEF-1 with its code claim, RAW-BEEF-2) stays; no MIX-1 yet.
        assert scalar(container, "SELECT count(*) FROM lots") == 2
        assert scalar(container, "SELECT count(*) FROM lot_genealogy") == 0

    # The restarted projector resumes from its committed position.
    assert projector_like(container, batch_size=batch_size).catch_up() == head(container)

    rows = snapshot(container)
    assert sorted(r[1] for r in rows["lots"]) == ["MIX-1", "RAW-BEEF-1", "RAW-BEEF-2"]
    assert len(rows["lot_genealogy"]) == len(rows["lot_edges"]) == 2
    assert sorted(r[4] for r in rows["lot_state"]) == [0, Decimal(30), Decimal(40)]


class FailingLastStatement(Projector):
    """A batch whose last statement the database refuses, after all its rows went in."""

    def ops_for(self, notification: Notification) -> list[Op]:
        return [*super().ops_for(notification), Op("SELECT 1 / 0", ())]


def test_a_batch_the_database_refuses_midway_leaves_nothing_and_no_open_transaction(
    container, ledger
):
    """A batch's statements, its tracking move and its commit travel together: when one
    statement fails on the server, the rows already inserted go too, the position stays,
    and the connection goes back to the pool out of its failed transaction."""
    receive_and_mix(ledger)
    failing = projector_like(container, FailingLastStatement)

    with pytest.raises(psycopg.errors.DivisionByZero):
        failing.apply(all_notifications(container))

    assert container.projector.position() == 0
    assert all(rows == [] for rows in snapshot(container).values())
    for _ in range(3):  # every connection the pool holds is usable again
        with container.read_pool.connection() as conn:
            assert conn.info.transaction_status == TransactionStatus.IDLE
    assert projector_like(container).catch_up() == head(container)
    assert scalar(container, "SELECT count(*) FROM lots") == 3


def test_a_batch_already_applied_is_skipped_by_tracking(container, ledger):
    receive_and_mix(ledger)
    batch = all_notifications(container)
    container.projector.apply(batch)
    before = snapshot(container)

    # A second projector (or a replayed subscription) hands over the same batch.
    position = projector_like(container).apply(batch)

    assert position == batch[-1].id
    assert snapshot(container) == before


def test_applying_the_same_events_twice_without_tracking_changes_nothing(container, ledger):
    a_day_at_the_plant(ledger)
    ops = [
        op for n in all_notifications(container)
        for op in container.projector.ops_for(n)
    ]

    with container.read_pool.connection() as conn, conn.transaction():
        apply_ops(conn, ops)
    once = snapshot(container)
    with container.read_pool.connection() as conn, conn.transaction():
        apply_ops(conn, ops)

    assert snapshot(container) == once
    # RAW-BEEF-1 100 kg, RAW-BEEF-2 30 kg, MIX-1 35 kg, MIX-2 35 kg: counted once each.
    assert scalar(container, "SELECT sum(consumed_kg) FROM lot_state") == Decimal(200)


def rows_as_text(container) -> dict[str, list[str]]:
    """Every read table's rows as PostgreSQL prints them: a numeric's scale, a time's
    microseconds and a JSON document's text show, where Python's equality would not."""
    with container.read_pool.connection() as conn:
        return {
            table: sorted(r[0] for r in conn.execute(f"SELECT t::text FROM {table} t"))
            for table in READ_TABLES
        }


def test_a_batch_stores_each_row_exactly_as_a_lone_row_is_stored(container, ledger):
    """A batch's rows of a table go in together as one JSON document, a lone row as
    typed parameters: the tables must read the same either way. Lots with a Unicode
    code, trailing and exponent decimals, freezer temperatures, JSON metadata and empty
    fields, a mix of them, and a QC decision with notes."""
    heavy = ledger.register_lot(NewLot(
        lot_code="DÖNER-Spieß-€-1", lot_type="RAW", weight_kg=Decimal("100.50"),
        temperature_c=Decimal("-18.125"), production_run_id=uuid4(), phase_id=uuid4(),
        operator_id=uuid4(),
        metadata_json='{"z": 1.50, "a": ["ü", null, true], "nested": {"kg": "1E+2"}}',
    ), actor_id=SYSTEM_ACTOR_ID)
    ledger.register_lot(NewLot(lot_code="BARE-1"), actor_id=SYSTEM_ACTOR_ID)
    register(ledger, "RAW-2", "RAW", "1E+2")
    register(ledger, "MIX-Ω", "MIX", "0.0010", ("DÖNER-Spieß-€-1", "0.0005"), ("RAW-2", "7.10"))
    ledger.record_qc_decision(NewQcDecision(
        lot_id=heavy.aggregate.id, decision="HOLD", notes="Temperatur über −18 °C gemessen",
        temperature_c=Decimal("-17.90"), digital_signature="sig:ä",
    ), actor_id=SYSTEM_ACTOR_ID)
    ops = [op for n in all_notifications(container) for op in container.projector.ops_for(n)]

    with container.read_pool.connection() as conn, conn.transaction():
        apply_ops(conn, ops)
    together = rows_as_text(container)
    with container.read_pool.connection() as conn, conn.transaction():
        truncate_read_tables(conn, container.projector.name)
        for op in ops:
            apply_ops(conn, [op])

    assert rows_as_text(container) == together
    assert len(together["lots"]) == 4 and len(together["lot_genealogy"]) == 2
    assert any("100.50" in row and "-18.125" in row for row in together["lots"])


def test_replaying_an_old_consumption_after_a_newer_qc_decision_changes_nothing(
    container, ledger
):
    receive_and_mix(ledger)
    raw = ledger.find_lot_by_code("RAW-BEEF-1")
    ledger.record_qc_decision(
        NewQcDecision(lot_id=raw.id, decision="FAIL", notes="Foreign body found in trim"),
        actor_id=None,
    )
    container.projector.catch_up()
    before = snapshot(container)
    consumed = [n for n in all_notifications(container) if n.topic.endswith("Lot.Consumed")]

    with container.read_pool.connection() as conn, conn.transaction():
        for n in consumed:
            apply_ops(conn, container.projector.ops_for(n))

    assert snapshot(container) == before


# --- tracking advances over every event ------------------------------------------------


def test_every_event_the_read_side_ignores_still_advances_tracking(container, ledger):
    register(ledger, "RAW-BEEF-1", "RAW", "100")  # ends with LotCode.Claimed
    ledger.register_user(email="op@plant.example", full_name=None, role="OPERATOR",
                         password_hash=None, actor_id=None)  # ends with UserEmail.Claimed
    notifications = all_notifications(container)
    ignored = [n for n in notifications if n.topic.endswith(".Claimed")]
    assert notifications[-1] in ignored
    assert all(container.projector.ops_for(n) == [] for n in ignored)

    assert container.projector.catch_up() == notifications[-1].id
    assert container.projector.position() == head(container)

    # A batch of only ignored events moves the position too.
    register(ledger, "RAW-BEEF-2", "RAW", "80")
    claim = all_notifications(container)[-1]
    assert claim.topic.endswith("LotCode.Claimed")
    assert container.projector.apply([claim]) == claim.id
    assert scalar(container, "SELECT position FROM projection_tracking WHERE name = %s",
                  container.projector.name) == claim.id


def test_every_event_topic_in_the_log_is_either_handled_or_known_to_be_ignored(
    container, ledger
):
    a_day_at_the_plant(ledger)
    handled = {f"{cls.__module__}:{cls.__qualname__}" for cls in HANDLERS}

    topics = {n.topic for n in all_notifications(container)}

    assert topics - handled == {"ledger.lot:LotCode.Claimed", "ledger.user:UserEmail.Claimed"}


# --- batching --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "expected_batches"),
    [(500, [300]), (100, [100, 100, 100]), (128, [128, 128, 44])],
)
def test_300_events_are_applied_many_per_transaction(
    container, ledger, batch_size, expected_batches
):
    for n in range(150):  # each receipt: Lot.Registered + LotCode.Claimed
        register(ledger, f"RAW-{n:03}", "RAW", "25")
    projector = projector_like(container, CountingProjector, batch_size=batch_size)

    position = projector.catch_up()

    assert projector.batches == expected_batches
    assert position == head(container) == projector.position()
    assert scalar(container, "SELECT count(*) FROM lots") == 150
    assert scalar(container, "SELECT count(*) FROM lot_state") == 150


def test_a_batch_is_applied_and_the_next_one_read_after_its_commit(container, ledger):
    """The runner applies a batch and reads the next one in the same round trip: what it
    reads is what a read of its own after the commit returns, up to an empty batch at the
    head of the log; a batch applied before is not applied again, and the read still comes."""
    receive_and_mix(ledger)
    projector = projector_like(container, batch_size=3)
    every = all_notifications(container)
    batch, seen = projector.notifications_after(0), []

    while batch:
        seen += batch
        position, batch = projector.apply_and_read_next(batch)
        assert position == seen[-1].id == projector.position()
        assert batch == projector.notifications_after(position)

    assert seen == every
    assert sorted(r[1] for r in snapshot(container)["lots"]) == [
        "MIX-1", "RAW-BEEF-1", "RAW-BEEF-2"
    ]
    assert projector.apply_and_read_next(every[-3:]) == (head(container), [])
    register(ledger, "RAW-BEEF-3", "RAW", "50")
    assert projector.apply_and_read_next(every[-3:]) == (
        every[-1].id, all_notifications(container)[len(every):]
    )


def test_only_the_projectors_batch_skips_waiting_for_its_flush(container, ledger):
    """The read tables are derived: a batch commits without waiting for its WAL flush
    (a crash that loses it loses its tracking position too, and it is applied again).
    The setting stays inside that transaction: its connection afterwards, and every other
    session (the ledger's appends among them), wait for their flush."""
    receive_and_mix(ledger)
    one = open_pool(container.conninfo, min_size=1, max_size=1, name="one")
    try:
        with one.connection() as conn:
            conn.execute("CREATE TABLE seen_setting (value text)")
        projector = Projector(
            pool=one,
            recorder=container.ledger.recorder,
            mapper=container.ledger.mapper,
            schema=container.settings.database_schema,
            render_lot=container.projector.render_lot,
        )
        seen = "INSERT INTO seen_setting SELECT current_setting('synchronous_commit')"
        projector.ops_for = lambda notification: [Op(seen, ())]  # type: ignore[method-assign]

        projector.apply(all_notifications(container))

        with one.connection() as conn:
            during = {row[0] for row in conn.execute("SELECT value FROM seen_setting")}
            after = conn.execute("SHOW synchronous_commit").fetchone()[0]
            conn.execute("DROP TABLE seen_setting")
    finally:
        one.close()
    with psycopg.connect(container.conninfo) as other:
        elsewhere = other.execute("SHOW synchronous_commit").fetchone()[0]
    assert during == {"off"}
    assert after == elsewhere == "on"


def test_the_projector_reads_the_log_after_its_position_as_the_library_reads_it(
    container, ledger
):
    """The projector reads its batches with a statement of its own: the same notifications
    as the library's `select_notifications`, after the position, in order, a batch at most."""
    receive_and_mix(ledger)
    projector = projector_like(container, batch_size=3)
    every = all_notifications(container)

    for position in (0, every[0].id, every[2].id, every[-2].id, every[-1].id):
        assert projector.notifications_after(position) == list(
            container.ledger.recorder.select_notifications(
                start=position, limit=3, inclusive_of_start=False
            )
        )
    assert projector.notifications_after(every[-2].id) == [every[-1]]
    assert projector.notifications_after(every[-1].id) == []
    assert [type(n.state) for n in projector.notifications_after(0)] == [bytes] * 3


# --- rebuild ---------------------------------------------------------------------------


@pytest.mark.parametrize("rebuild_batch_size", [500, 1], ids=["one-batch", "event-by-event"])
def test_a_rebuild_from_zero_equals_the_tables_built_as_the_day_went(
    container, ledger, rebuild_batch_size
):
    # Built incrementally: the projector catches up after every step of the day.
    a_day_at_the_plant(ledger, after_each_step=container.projector.catch_up)
    incremental = snapshot(container)
    assert sum(len(rows) for rows in incremental.values()) > 20

    with container.read_pool.connection() as conn, conn.transaction():
        truncate_read_tables(conn, container.projector.name)
    assert container.projector.position() == 0
    assert all(rows == [] for rows in snapshot(container).values())
    projector_like(container, batch_size=rebuild_batch_size).catch_up()

    assert snapshot(container) == incremental
    assert container.projector.position() == head(container)


# --- only one projector runs at a time ---------------------------------------------------


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextlib.contextmanager
def leader_and_standby(container) -> Iterator[tuple[ProjectorRunner, ProjectorRunner]]:
    """Two projector runners started together: exactly one takes the lock."""
    runners = [
        ProjectorRunner(projector_like(container), container.conninfo, retry_seconds=0.1)
        for _ in range(2)
    ]
    try:
        for runner in runners:
            runner.start()
        assert wait_until(lambda: any(r.active.is_set() for r in runners))
        time.sleep(1.2)  # the standby polls the lock every 0.5 s: give it two tries
        active = [r for r in runners if r.active.is_set()]
        assert len(active) == 1
        (leader,) = active
        (standby,) = [r for r in runners if r is not leader]
        yield leader, standby
    finally:
        for runner in runners:
            runner.stop()


def test_two_projector_processes_take_turns_and_the_standby_takes_over(container, ledger):
    with leader_and_standby(container) as (leader, standby):
        receive_and_mix(ledger)
        assert wait_until(lambda: container.projector.position() == head(container))
        assert scalar(container, "SELECT count(*) FROM lots") == 3

        leader.stop()
        assert not leader.active.is_set()
        assert wait_until(standby.active.is_set)

        register(ledger, "FG-1", "FG", "20", ("MIX-1", "20"))
        assert wait_until(lambda: container.projector.position() == head(container))
        assert scalar(container, "SELECT count(*) FROM lots") == 4
        assert scalar(container, "SELECT count(*) FROM lot_genealogy") == 3


def test_a_leader_whose_lock_the_database_dropped_steps_down_and_nothing_applies_twice(
    container, ledger
):
    """The leader's lock connection is killed (a failover, an admin): the lock is free at
    once and the standby takes over, while the old leader, which checks its lock at most
    once a second, may still try a batch. Whatever the interleaving, the tables end up
    equal to a rebuild from zero."""
    with leader_and_standby(container) as (leader, standby):
        receive_and_mix(ledger)
        assert wait_until(lambda: container.projector.position() == head(container))

        killed = scalar(
            container,
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.objid = hashtext(%s)::oid",
            leader.projector.lock_key,
        )
        assert killed is True
        assert wait_until(standby.active.is_set)
        register(ledger, "FG-1", "FG", "20", ("MIX-1", "20"))  # both may try this batch
        time.sleep(1.1)  # past the old leader's check interval
        register(ledger, "FG-2", "FG", "10", ("MIX-1", "10"))
        assert wait_until(lambda: not leader.active.is_set())
        assert wait_until(lambda: container.projector.position() == head(container))
        assert leader.failures >= 1 and standby.active.is_set()

    followed = snapshot(container)
    assert scalar(container, "SELECT consumed_kg FROM lot_state s JOIN lots l"
                  " ON l.id = s.lot_id WHERE l.lot_code = 'MIX-1'") == Decimal(30)
    with container.read_pool.connection() as conn, conn.transaction():
        truncate_read_tables(conn, container.projector.name)
    projector_like(container).catch_up()
    assert snapshot(container) == followed


def test_a_running_projector_that_crashes_mid_batch_restarts_and_projects_once(
    container, ledger
):
    crashes: list[int] = []

    def crash_once(fresh: list[Notification]) -> None:
        if not crashes:
            crashes.append(fresh[-1].id)
            raise Crash

    runner = ProjectorRunner(
        projector_like(container, before_commit=crash_once), container.conninfo,
        retry_seconds=0.1,
    )
    receive_and_mix(ledger)
    try:
        runner.start()
        assert wait_until(lambda: container.projector.position() == head(container))
    finally:
        runner.stop()

    assert crashes == [head(container)]  # the first attempt had the whole log, and died
    rows = snapshot(container)
    assert sorted(r[1] for r in rows["lots"]) == ["MIX-1", "RAW-BEEF-1", "RAW-BEEF-2"]
    assert len(rows["lot_genealogy"]) == 2
    assert sorted(r[4] for r in rows["lot_state"]) == [0, Decimal(30), Decimal(40)]


def test_a_projector_rewound_by_a_rebuild_stops_rather_than_skip_events(container, ledger):
    """A rebuild empties the tables under a running projector; its next batch must not be
    filtered against the old position (that would skip everything before it)."""
    from projections.projector import ProjectionRewound  # noqa: PLC0415

    register(ledger, "RAW-BEEF-1", "RAW", "100")
    running = container.projector
    running.catch_up()
    with container.read_pool.connection() as conn, conn.transaction():
        truncate_read_tables(conn, running.name)
    register(ledger, "RAW-BEEF-2", "RAW", "80")
    new_events = [n for n in all_notifications(container) if n.id > running._known]

    with pytest.raises(ProjectionRewound):
        running.apply(new_events)

    assert projector_like(container).catch_up() == head(container)
    assert scalar(container, "SELECT count(*) FROM lots") == 2


def test_a_waiter_wakes_even_when_the_projectors_notification_is_lost(container):
    """LISTEN/NOTIFY can drop a notification (a reconnect, a busy server): a POST waiting to
    read its own write must still see the projector's position, by looking for it."""
    watermark = container.watermark

    async def post_waiting_for_its_write() -> bool:
        await watermark.start_on_loop()
        try:
            with container.read_pool.connection() as conn:
                conn.execute(
                    "INSERT INTO projection_tracking (name, position) VALUES (%s, 9)"
                    " ON CONFLICT (name) DO UPDATE SET position = 9",
                    (watermark.name,),
                )
            return await watermark.wait_for_async(9, timeout=5)
        finally:
            await watermark.stop_on_loop()

    assert asyncio.run(post_waiting_for_its_write()) is True
    assert watermark.position == 9


def test_the_projector_keeps_planner_statistics_as_the_read_tables_grow(
    container, ledger, monkeypatch
):
    """With autovacuum off (as on this plant's server) nothing else would ever analyze the
    read tables, and a recall over a million lots would be planned as if they were empty."""
    monkeypatch.setattr("projections.projector.ANALYZE_EVERY_EVENTS", 5)
    for i in range(3):
        ledger.register_lot(NewLot(f"RAW-{i}", "RAW", weight_kg=Decimal(10)), actor_id=None)

    container.projector.catch_up()
    assert container.projector.wait_for_statistics(timeout=10)

    with container.read_pool.connection() as conn:
        analyzed = conn.execute(
            "SELECT relname FROM pg_stat_user_tables"
            " WHERE schemaname = current_schema() AND last_analyze IS NOT NULL"
        ).fetchall()
        jit = conn.execute("SHOW jit").fetchone()[0]
    assert {"lots", "lot_edges", "lot_state", "qc_decisions"} <= {r[0] for r in analyzed}
    assert jit == "off"


def _finished_within(seconds: float, work: Callable[[], Any]) -> Any:
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(work()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert done, f"still running after {seconds} s"
    return done[0]


def test_a_slow_analyze_holds_up_no_batch(container, ledger, monkeypatch):
    """Every POST's 201 waits for the projector's batch, so the statistics are refreshed
    beside the projection, never between two batches: here an ANALYZE that queues behind
    a maintenance lock on one read table while lots keep being registered."""
    monkeypatch.setattr("projections.projector.ANALYZE_EVERY_EVENTS", 5)
    projector = container.projector
    for i in range(3):
        ledger.register_lot(NewLot(f"RAW-{i}", "RAW", weight_kg=Decimal(10)), actor_id=None)

    with container.read_pool.connection() as maintenance, maintenance.transaction():
        # Blocks ANALYZE of lot_json, not the projector's inserts into it.
        maintenance.execute("LOCK TABLE lot_json IN SHARE UPDATE EXCLUSIVE MODE")
        _finished_within(5, projector.catch_up)
        assert projector.wait_for_statistics(timeout=0.2) is False, "ANALYZE is queued"
        for i in range(3, 6):
            ledger.register_lot(NewLot(f"RAW-{i}", "RAW", weight_kg=Decimal(10)), actor_id=None)
        assert _finished_within(5, projector.catch_up) == head(container)
        assert scalar(container, "SELECT count(*) FROM lot_json") == 6

    assert projector.wait_for_statistics(timeout=10) is True
    with container.read_pool.connection() as conn:
        analyzed = conn.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
            " WHERE schemaname = current_schema() AND relname = 'lot_json'"
        ).fetchone()[0]
    assert analyzed is True


def test_an_append_committed_while_the_projector_starts_to_listen_is_still_projected(
    container, ledger
):
    """A lot registered just before the projector listens sends its notification to
    nobody; the projector must still see it, not wait for the plant's next registration
    (in a quiet hour, that may be long)."""

    class RegisteringJustBeforeListening(ProjectorRunner):
        def _listen(self, conn) -> None:
            ledger.register_lot(NewLot("RAW-LATE", "RAW"), actor_id=None)
            super()._listen(conn)

    runner = RegisteringJustBeforeListening(
        projector_like(container), container.conninfo, retry_seconds=0.1
    )
    runner.start()
    try:
        wait_for_lot(container, "RAW-LATE")
    finally:
        runner.stop()

    assert lots_named(container, "RAW-LATE") == 1
    assert runner.failures == 0


def test_a_running_projector_follows_registrations_as_they_commit(container, ledger):
    """Listening, pulling and applying in one thread: each registration is projected
    without another one to push it along."""
    runner = ProjectorRunner(projector_like(container), container.conninfo, retry_seconds=0.1)
    runner.start()
    try:
        assert runner.active.wait(10)
        for n in range(3):
            ledger.register_lot(NewLot(f"RAW-FOLLOWED-{n}", "RAW"), actor_id=None)
            wait_for_lot(container, f"RAW-FOLLOWED-{n}")
            assert lots_named(container, f"RAW-FOLLOWED-{n}") == 1
    finally:
        runner.stop()
    assert runner.failures == 0


def lots_named(container, code: str) -> int:
    return scalar(container, "SELECT count(*) FROM lots WHERE lot_code = %s", code)


def wait_for_lot(container, code: str, seconds: float = 10) -> None:
    """Until a running projector has the lot in `lots`, or the time is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not lots_named(container, code):
        time.sleep(0.02)


def test_a_stopped_projector_leaves_no_connection_of_the_pool_listening(container, ledger):
    """Its listening connection goes back to the ledger's pool; still listening, it would
    keep every notification it read while serving others, without bound."""
    runner = ProjectorRunner(projector_like(container), container.conninfo, retry_seconds=0.1)
    runner.start()
    try:
        assert runner.active.wait(10)
        ledger.register_lot(NewLot("RAW-HEARD", "RAW"), actor_id=None)
        wait_for_lot(container, "RAW-HEARD")
    finally:
        runner.stop()
    assert lots_named(container, "RAW-HEARD") == 1

    pool = ledger.recorder.datastore.pool
    idle = [pool.getconn() for _ in range(pool.get_stats()["pool_available"])]
    try:
        listening = [  # the library's pool gives rows as dicts
            conn.execute("SELECT count(*) AS channels FROM pg_listening_channels()")
            .fetchone()["channels"]
            for conn in idle
        ]
    finally:
        for conn in idle:
            pool.putconn(conn)
    assert idle, "the projector's connections went back to the pool"
    assert listening == [0] * len(idle)
