"""Follows the event log and applies it to the read tables, many events per transaction.

Exactly-once: the rows of a batch and the projection's position commit together, and
the position only moves from the value this projector last saw (compare and set), so a
batch that was already applied (by a crashed run, or by a second projector) is skipped.
Only one projector per name is active at a time: it holds a session advisory lock while
it runs, and checks before each batch that the lock's connection is still alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import psycopg
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import resolve_topic
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from projections.handlers import BULK_INSERTS, Op, RenderLot, handles, ops_for, rows_as_json
from projections.round_trip import RoundTrip, notifications_from
from projections.schema import TRACKING_MOVED, analyze_read_tables, truncate_read_tables

log = logging.getLogger(__name__)

PROJECTED_CHANNEL = "flowviz_projected"
DEFAULT_PROJECTION = "legacy_tables"
ANALYZE_EVERY_EVENTS = 100_000
CHECK_LOCK_SECONDS = 1.0


class _TrackingMoved(Exception):
    """Another projector committed this projection's position first."""


class ProjectionRewound(Exception):
    """The projection's position went back (a rebuild): resubscribe from where it is."""


def apply_ops(target: Any, ops: Sequence[Op]) -> None:
    """Runs a batch's statements on `target` (a `RoundTrip`, or a connection): inserts
    first, grouped by table, then updates in order.

    Every insert is of a row that no other statement of the read side inserts, and
    ignores a row already there, so inserts commute with each other; and the row an
    update changes was inserted by an earlier event. So all inserts may go first, each
    table's as one statement, while updates keep their event order (their version
    guards depend on it).
    """
    inserts = sorted((op for op in ops if op.sql.startswith("INSERT")), key=lambda op: op.sql)
    updates = [op for op in ops if not op.sql.startswith("INSERT")]
    for run in (inserts, updates):
        for sql, group in groupby(run, key=lambda op: op.sql):
            params = [op.params for op in group]
            bulk = BULK_INSERTS.get(sql)
            if len(params) > 1 and bulk is not None:
                target.execute(bulk.sql, (rows_as_json(bulk.columns, params),))
            else:
                for one in params:
                    target.execute(sql, one)


_READ_POSITION = "SELECT position FROM projection_tracking WHERE name = %s"
_ADVANCE = "SELECT projection_advance(%s, %s, %s, %s, %s)"


def _roll_back(conn: psycopg.Connection[Any]) -> None:
    """Ends a batch's failed or unfinished transaction; a broken connection ends it
    itself, and the pool then drops that connection."""
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")


def read_position(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(_READ_POSITION, (name,)).fetchone()
    return int(row[0]) if row else 0


async def read_position_async(conn: psycopg.AsyncConnection[Any], name: str) -> int:
    row = await (await conn.execute(_READ_POSITION, (name,))).fetchone()
    return int(row[0]) if row else 0


class ProjectorLock:
    """A session advisory lock on a connection of its own: held until released or closed,
    and released by PostgreSQL if the holder's process dies."""

    def __init__(self, conninfo: str, key: str) -> None:
        self.conninfo = conninfo
        self.key = key
        self._conn: psycopg.Connection[Any] | None = None
        self._checked = float("-inf")

    def __enter__(self) -> ProjectorLock:
        # Keepalives: a connection that silently died must not leave us believing we
        # still hold the lock while another projector takes it.
        self._conn = psycopg.connect(
            self.conninfo, autocommit=True,
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
            # pg_stat_activity then says which process holds (or waits for) the lock.
            application_name=f"flowviz-projector:{os.getpid()}",
        )
        return self

    def check(self) -> None:
        """Raises if the lock's connection (and so the lock) is gone.

        At most once a second: a round trip per batch was about 6% of the projector's
        time per batch. A projector that lost its lock and applies a batch or two
        more cannot apply anything twice: the tracking row's compare-and-set refuses the
        batch of whichever projector comes second."""
        assert self._conn is not None, "use the lock as a context manager"
        now = time.monotonic()
        if now - self._checked < CHECK_LOCK_SECONDS:
            return
        self._conn.execute("SELECT 1")
        self._checked = now

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def try_acquire(self) -> bool:
        assert self._conn is not None, "use the lock as a context manager"
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (self.key,)
        ).fetchone()
        return bool(row and row[0])


class Projector:
    def __init__(  # noqa: PLR0913
        self,
        *,
        pool: ConnectionPool,
        recorder: PostgresApplicationRecorder,
        mapper: Mapper[Any],
        schema: str,
        render_lot: RenderLot,
        name: str = DEFAULT_PROJECTION,
        batch_size: int = 500,
        before_commit: Callable[[list[Notification]], None] | None = None,
        on_applied: Callable[[int, int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.recorder = recorder
        self.mapper = mapper
        self.schema = schema
        self.render_lot = render_lot
        self.name = name
        self.batch_size = batch_size
        # Test hook: raising here simulates a crash after apply, before commit.
        self.before_commit = before_commit
        self.on_applied = on_applied
        self._known: int | None = None  # the position this projector last committed or read
        self._since_analyze = 0
        self._analyzing = threading.Lock()  # held while an ANALYZE runs in the background
        self._select_after = (
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM {table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )
            .format(table=Identifier(recorder.datastore.schema, recorder.events_table_name))
            .as_string()
        )

    @property
    def lock_key(self) -> str:
        return f"flowviz:projector:{self.schema}:{self.name}"

    def ensure_tracking_row(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO projection_tracking (name, position) VALUES (%s, 0)"
                " ON CONFLICT (name) DO NOTHING",
                (self.name,),
            )

    def ops_for(self, notification: Notification) -> list[Op]:
        # Half the log (the lot-code claims) is of no use to the read side: its position
        # still advances, but decoding it was over a third of the projector's decoding time.
        if not handles(resolve_topic(notification.topic)):
            return []
        return list(ops_for(self.mapper.to_domain_event(notification), self.render_lot))

    def notifications_after(self, position: int) -> list[Notification]:
        """The log's next batch after `position`, read on the projector's own pool. The
        library's `select_notifications` composes its statement and takes a connection
        from the ledger's pool on every call: in batches of 12, the size of a live load's,
        109-112 us of the projector's CPU per lot against 96-98 us this way (a rebuild of
        40,000-140,000 lots, 3 alternated pairs)."""
        trip = RoundTrip()
        read = trip.execute(self._select_after, (position, self.batch_size), binary=True)
        with self.pool.connection() as conn:
            return notifications_from(trip.run(conn)[read])

    def position(self) -> int:
        """The committed position, read from the database (and remembered)."""
        self.ensure_tracking_row()
        with self.pool.connection() as conn:
            self._known = read_position(conn, self.name)
        return self._known

    def apply(self, notifications: Sequence[Notification]) -> int:
        """Applies one batch in one transaction; returns the position afterwards.

        Pipelined: the batch's statements, the tracking update, the notification and the
        commit go in one round trip. The tracking row moves only from the
        position this projector last saw: if another projector moved it first, nothing of
        this batch is kept and the batch is filtered again from the new position.
        """
        return self._apply(notifications, read_next=False)[0]

    def apply_and_read_next(
        self, notifications: Sequence[Notification]
    ) -> tuple[int, list[Notification]]:
        """`apply`, and the log's next batch after the new position, read in the same
        round trip, after the commit. Read on its own, the next batch cost a round trip
        per batch: in batches of 12 (a live load's), 69-72 -> 59-60 us of the projector's
        CPU per lot, and 131-141 -> 114-124 us of its time (a replay of 20,000 lots, 3
        alternated pairs)."""
        position, following = self._apply(notifications, read_next=True)
        return position, self.notifications_after(position) if following is None else following

    def _apply(
        self, notifications: Sequence[Notification], *, read_next: bool
    ) -> tuple[int, list[Notification] | None]:
        for _ in range(3):
            expected = self._known if self._known is not None else self.position()
            fresh = [n for n in notifications if n.id > expected]
            if not fresh:
                return expected, None
            position = fresh[-1].id
            ops = [op for n in fresh for op in self.ops_for(n)]
            try:
                following = self._commit(ops, expected, position, fresh, read_next=read_next)
            except _TrackingMoved:
                if self.position() < expected:
                    # Rewound under us (a rebuild): filtering this batch would skip the
                    # events before it. Start again from the new position instead.
                    raise ProjectionRewound(self.name) from None
                continue
            self._known = position
            self._keep_statistics(len(fresh))
            if self.on_applied is not None:
                self.on_applied(len(fresh), position)
            return position, following
        raise RuntimeError(f"projection {self.name} keeps moving under this projector")

    def _keep_statistics(self, applied: int) -> None:
        # Autovacuum may be off, or behind a bulk load: see analyze_read_tables. In a
        # thread of its own: run between two batches, every POST waited out the ANALYZE
        # for its 201 (170 ms with 57,000 lots, idle; longer under load).
        self._since_analyze += applied
        if self._since_analyze < ANALYZE_EVERY_EVENTS:
            return
        self._since_analyze = 0
        if not self._analyzing.acquire(blocking=False):
            return  # one still runs; the next comes after as many events again
        try:
            threading.Thread(target=self._analyze, name="projector-analyze", daemon=True).start()
        except BaseException:
            self._analyzing.release()
            raise

    def _analyze(self) -> None:
        try:
            with self.pool.connection() as conn:
                analyze_read_tables(conn)
        except Exception:  # noqa: BLE001 - the next round tries again; projection goes on
            log.exception("the read tables' planner statistics were not refreshed")
        finally:
            self._analyzing.release()

    def wait_for_statistics(self, timeout: float) -> bool:
        """Waits for an ANALYZE under way, if any; False if it outlasts `timeout`."""
        if not self._analyzing.acquire(timeout=timeout):
            return False
        self._analyzing.release()
        return True

    def _commit(  # noqa: PLR0913
        self, ops: list[Op], expected: int, position: int, fresh: list[Notification],
        *, read_next: bool,
    ) -> list[Notification] | None:
        # One round trip: BEGIN, the batch's statements, the tracking row's move, COMMIT
        # and the read of the next batch go out together and are read back at one sync.
        trip = RoundTrip()
        trip.execute("BEGIN")
        # The read tables are derived from the log, whose appends do wait for their flush.
        # A batch whose commit a crash loses is lost with its tracking position, and the
        # projector applies it again. Not waiting for the batch's own flush takes an fsync
        # out of every batch's round trip, and so out of every POST's wait for its 201.
        trip.execute("SET LOCAL synchronous_commit TO off")
        apply_ops(trip, ops)
        trip.execute(
            _ADVANCE,
            (self.name, expected, position,
             PROJECTED_CHANNEL, f"{self.schema}:{self.name}:{position}"),
        )
        trip.execute("COMMIT")
        following = (
            trip.execute(self._select_after, (position, self.batch_size), binary=True)
            if read_next else None
        )
        with self.pool.connection() as conn:
            try:
                if self.before_commit is not None:
                    self.before_commit(fresh)
                answers = trip.run(conn)
            except BaseException as e:
                _roll_back(conn)
                if isinstance(e, psycopg.Error) and e.sqlstate == TRACKING_MOVED:
                    raise _TrackingMoved from None
                raise
            return None if following is None else notifications_from(answers[following])

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Empties the read tables and replays the whole log. Hold the projector lock."""
        with self.pool.connection() as conn, conn.transaction():
            truncate_read_tables(conn, self.name)
        self._known = None
        return self.catch_up(progress)

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Applies everything recorded so far, without subscribing; returns the position."""
        position = self.position()
        batch = self.notifications_after(position)
        while batch:
            applied = len(batch)
            position, batch = self.apply_and_read_next(batch)
            if progress is not None:
                progress(applied, position)
        return position


class ProjectorRunner:
    """Runs a projector in a background thread until stopped; restarts it after errors."""

    def __init__(self, projector: Projector, conninfo: str, *, retry_seconds: float = 1.0):
        self.projector = projector
        self.conninfo = conninfo
        self.retry_seconds = retry_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.active = threading.Event()
        self.failures = 0  # restarts after an error: a stuck projector shows here

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._run_while_holding_lock()
            except Exception:
                if self._stopping.is_set():
                    break
                log.exception("projector failed; resuming from its committed position")
                self.failures += 1
                self._stopping.wait(self.retry_seconds)

    def _run_while_holding_lock(self) -> None:
        with ProjectorLock(self.conninfo, self.projector.lock_key) as lock:
            while not self._stopping.is_set():
                if lock.try_acquire():
                    break
                self._stopping.wait(0.5)  # another process projects; stand by
            if self._stopping.is_set():
                return
            self.active.set()
            try:
                self._follow(lock)
            finally:
                self.active.clear()

    def _follow(self, lock: ProjectorLock) -> None:
        """Listens, pulls and applies in this one thread. The library's subscription hands
        each batch from a listening thread to a pulling thread to this one: three threads
        taking turns at the interpreter lock, 40-47 futex calls per batch under load."""
        projector = self.projector
        recorder = projector.recorder
        with recorder.datastore.get_connection() as listening:
            self._listen(listening)
            try:
                self._pull_and_apply(lock, listening)
            finally:
                # The connection goes back to the library's pool: listening there, it would
                # keep every notification it happened to read, in an unbounded backlog.
                with contextlib.suppress(Exception):
                    listening.execute("UNLISTEN *")
                    for _ in listening.notifies(timeout=0):
                        pass

    def _pull_and_apply(self, lock: ProjectorLock, listening: psycopg.Connection[Any]) -> None:
        projector = self.projector
        # Read after LISTEN: an append committed before it is in the first pull, one
        # committed after it also sends a notification.
        position = projector.position()
        batch = projector.notifications_after(position)
        while not self._stopping.is_set():
            if batch:
                lock.check()
                position, batch = projector.apply_and_read_next(batch)
                continue
            # Nothing new: wait for a notification, at most 0.1 s so that a stop is
            # seen; then take the others already queued, since one pull covers them.
            notified = False
            for _ in listening.notifies(timeout=0.1, stop_after=1):
                notified = True
            if notified:
                for _ in listening.notifies(timeout=0):
                    pass
            batch = projector.notifications_after(position)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("LISTEN {0}").format(Identifier(self.projector.recorder.channel_name)))
