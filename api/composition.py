"""The composition root: the one place that wires settings, ledger, read side and security.

The HTTP app and the command line both build their objects here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from uuid import UUID

import redis
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from api import legacy_shapes
from api.login_throttle import LoginThrottle, MemoryLoginThrottle, RedisLoginThrottle
from api.metrics import Metrics
from api.security import PasswordHasher, TokenService
from api.settings import Settings
from ledger.application import Ledger
from ledger.event_store import ensure_schema, postgres_env
from ledger.group_commit import GroupCommitRecorder, WriterStats
from projections.db import open_async_pool, open_pool, schema_conninfo
from projections.projector import Projector, ProjectorRunner
from projections.queries import ReadModel, UserAccess
from projections.schema import create_read_tables
from projections.watermark import ProjectionWatermark

log = logging.getLogger(__name__)


class DatabaseNotConfigured(RuntimeError):
    pass


MISSING = object()


@dataclass
class AccessCache:
    """Role and active flag per user, fresh within a few seconds of a change.

    An entry in the last second of its life that a request finds is read again in the
    background, once, while it still answers. Left to expire, every request of a busy
    user went on to the route until one of them had read it again, each with a read of
    its own: about a twentieth of a worker's time under POST load (py-spy). An entry is
    never used past `ttl_seconds`; a read that fails or lags lets it expire as before."""

    read_model: ReadModel
    ttl_seconds: float = 5.0
    refresh_ahead_seconds: float = 1.0
    _entries: dict[UUID, tuple[float, UserAccess | None]] = field(default_factory=dict)
    _refreshing: set[UUID] = field(default_factory=set)

    def cached(self, user_id: UUID) -> UserAccess | None | object:
        """The cached answer, or MISSING when it must be read again."""
        hit = self._entries.get(user_id)
        if hit is None:
            return MISSING
        age = time.monotonic() - hit[0]
        if age >= self.ttl_seconds:
            return MISSING
        if age >= self.ttl_seconds - self.refresh_ahead_seconds:
            self._refresh_soon(user_id)
        return hit[1]

    def get(self, user_id: UUID) -> UserAccess | None:
        hit = self.cached(user_id)
        if hit is not MISSING:
            return hit  # type: ignore[return-value]
        return self._read(user_id)

    def _read(self, user_id: UUID) -> UserAccess | None:
        now = time.monotonic()
        access = self.read_model.user_access(user_id)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[user_id] = (now, access)
        return access

    def _refresh_soon(self, user_id: UUID) -> None:
        if user_id in self._refreshing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a thread's caller: it reads the entry itself once it expires
            return
        self._refreshing.add(user_id)
        loop.run_in_executor(None, self._read_ahead, user_id)

    def _read_ahead(self, user_id: UUID) -> None:
        try:
            self._read(user_id)
        except Exception as e:  # noqa: BLE001 - the entry expires and the route reads it
            log.debug("access of %s not read ahead: %s", user_id, e)
        finally:
            self._refreshing.discard(user_id)


class Container:
    def __init__(self, settings: Settings, *, run_projector: bool | None = None) -> None:
        if not settings.database_url:
            raise DatabaseNotConfigured("DATABASE_URL is not set")
        settings.check_startable()
        self.settings = settings
        url, schema = settings.database_url, settings.database_schema
        if schema != "public":
            ensure_schema(url, schema)
        # The library keeps its pool's minimum open for good: two, not the whole pool, so
        # that idle workers do not hold what a busy one or another process may need.
        kept = min(2, settings.db_pool_size)
        self.ledger = Ledger(
            env=postgres_env(
                url, schema=schema, pool_size=kept, max_overflow=settings.db_pool_size - kept
            )
        )
        self.conninfo = schema_conninfo(url, schema)
        self.read_pool: ConnectionPool = open_pool(
            self.conninfo, max_size=settings.db_pool_size, name="read"
        )
        with self.read_pool.connection() as conn:
            create_read_tables(conn)
        self.read_model = ReadModel(self.read_pool)
        self.access = AccessCache(self.read_model)
        self.metrics = Metrics(self._pools, self._projector_failures, self._writer_stats)
        self.ledger.on_commit.append(self.metrics.count_committed)
        self.passwords = PasswordHasher(settings.bcrypt_rounds)
        self.redis: redis.Redis | None = (
            redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
        )
        self.login_throttle: LoginThrottle = (
            RedisLoginThrottle(
                self.redis,
                prefix=f"flowviz:{schema}",
                max_failures=settings.login_max_failures,
                window=settings.login_lockout_seconds,
            )
            if self.redis is not None
            else MemoryLoginThrottle(
                max_failures=settings.login_max_failures, window=settings.login_lockout_seconds
            )
        )
        self.tokens = TokenService(settings.jwt_secret(), settings.jwt_expire_minutes)
        self.projector = Projector(
            pool=self.read_pool,
            recorder=self.ledger.recorder,  # type: ignore[arg-type]
            mapper=self.ledger.mapper,
            schema=schema,
            render_lot=legacy_shapes.lot_json_from_registration,
        )
        # A projection that never ran is the most behind of all: status and metrics list it.
        self.projector.ensure_tracking_row()
        self.watermark = ProjectionWatermark(self.conninfo, schema)
        self.runner: ProjectorRunner | None = None
        self._started = False
        if settings.flowviz_run_projector if run_projector is None else run_projector:
            self.runner = ProjectorRunner(self.projector, self.conninfo)

    @property
    def events_table(self) -> str:
        return self.ledger.recorder.events_table_name  # type: ignore[attr-defined]

    def _projector_failures(self) -> int:
        return self.runner.failures if self.runner is not None else 0

    def _writer_stats(self) -> WriterStats | None:
        recorder = self.ledger.recorder
        return recorder.stats if isinstance(recorder, GroupCommitRecorder) else None

    def _pools(self) -> dict[str, ConnectionPool | AsyncConnectionPool]:
        pools = {"ledger": self.ledger.recorder.datastore.pool, "read": self.read_pool}  # type: ignore[attr-defined]
        if self.read_model.async_pool is not None:
            pools["read-async"] = self.read_model.async_pool
        return pools

    async def open_async(self) -> None:
        """Opens what lives on the serving event loop; call from the app's lifespan."""
        self.read_model.async_pool = await open_async_pool(
            self.conninfo, max_size=self.settings.db_pool_size, name="read-async"
        )
        # Read-your-writes is waited for on this loop only: its listener lives here too.
        await self.watermark.start_on_loop()

    async def close_async(self) -> None:
        await self.watermark.stop_on_loop()
        pool, self.read_model.async_pool = self.read_model.async_pool, None
        if pool is not None:
            await pool.close()

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.metrics.start_refreshing()
        if self.runner is not None:
            self.runner.start()

    def close(self) -> None:
        self.metrics.stop_refreshing()
        if self.runner is not None:
            self.runner.stop()
        self.projector.wait_for_statistics(timeout=10)  # its connection is the read pool's
        self.read_pool.close()
        self.ledger.close()
        if self.redis is not None:
            self.redis.close()
