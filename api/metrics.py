"""Prometheus metrics: business counters, traceability latency, DB pools, HTTP traffic."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metric_tallies import CountTally, DurationTally, LevelTally, Tallies
from ledger.group_commit import WriterStats
from ledger.lot import Lot
from projections.queries import ProjectionStatus


class Metrics:
    """One set per process. Under several workers (PROMETHEUS_MULTIPROC_DIR set before the
    workers start) values go to shared files and a scrape of any worker sums them all."""

    def __init__(
        self,
        pools: Callable[[], dict[str, ConnectionPool | AsyncConnectionPool]],
        projector_failures: Callable[[], int] = lambda: 0,
        writer_stats: Callable[[], WriterStats | None] = lambda: None,
    ) -> None:
        self._pools = pools
        self._projector_failures = projector_failures
        self._writer_stats = writer_stats
        self._writer_seen = WriterStats()
        self._writer_lock = threading.Lock()  # a scrape and the refresh loop may overlap
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._stop_refreshing = threading.Event()
        self.registry = CollectorRegistry()
        r = self.registry
        self.lots_registered = Counter(
            "flowviz_lots_registered", "Lots registered (counted at commit)", ["lot_type"],
            registry=r,
        )
        self.qc_decisions = Counter(
            "flowviz_qc_decisions", "QC decisions recorded (counted at commit)", ["decision"],
            registry=r,
        )
        self.traceability_seconds = Histogram(
            "flowviz_traceability_query_duration_seconds", "Traceability query time",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.pool_active = Gauge(
            "flowviz_db_pool_connections_active", "Connections lent out", ["pool"],
            registry=r, multiprocess_mode="livesum",
        )
        self.pool_idle = Gauge(
            "flowviz_db_pool_connections_idle", "Connections waiting in the pool", ["pool"],
            registry=r, multiprocess_mode="livesum",
        )
        self.projection_lag = Gauge(
            "flowviz_projection_lag_events", "Events recorded but not yet in the read tables",
            ["projection"], registry=r, multiprocess_mode="livemostrecent",
        )
        self.projector_failures = Gauge(
            "flowviz_projector_failures", "Projector restarts after an error",
            registry=r, multiprocess_mode="livesum",
        )
        # What the bench's (d) breakdown shows, in production: batch size is
        # appends / batches, and a writer busy close to 1 s per second is saturated.
        self.ledger_appends = Counter(
            "flowviz_ledger_appends", "Appends committed by the group-commit writer",
            registry=r,
        )
        self.ledger_append_batches = Counter(
            "flowviz_ledger_append_batches", "Transactions the group-commit writer committed",
            registry=r,
        )
        self.ledger_writer_busy = Counter(
            "flowviz_ledger_writer_busy_seconds", "Time the group-commit writer spent committing",
            registry=r,
        )
        self.http_requests = Counter(
            "flowviz_http_requests", "HTTP requests", ["method", "path", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "flowviz_http_request_duration_seconds", "HTTP request latency", ["method", "path"],
            registry=r,
        )
        self.http_in_progress = Gauge(
            "flowviz_http_requests_in_progress", "HTTP requests being served", ["method"],
            registry=r, multiprocess_mode="livesum",
        )
        # What every request moves is counted here first: see api/metric_tallies.py.
        self.http_in_progress_now = LevelTally(self.http_in_progress)
        self.http_seconds_now = DurationTally(self.http_seconds)
        self.http_requests_now = CountTally(self.http_requests)
        self.traceability_seconds_now = DurationTally(self.traceability_seconds)
        self._tallies = Tallies(
            self.http_in_progress_now, self.http_seconds_now, self.http_requests_now,
            self.traceability_seconds_now,
        )
        # Business counters stay exact in every worker's scrape at once: the labelled
        # series is only looked up once (`labels()` takes a lock and checks its values).
        self._lots_by_type: dict[str, Any] = {}

    def count_committed(self, events: list[object]) -> None:
        """Business counters move when the ledger commits, whoever wrote (API, CLI, demo)."""
        for event in events:
            if isinstance(event, Lot.Registered):
                lot_type = event.lot_type or "none"
                series = self._lots_by_type.get(lot_type)
                if series is None:
                    series = self._lots_by_type[lot_type] = self.lots_registered.labels(lot_type)
                series.inc()
            elif isinstance(event, Lot.QcDecisionRecorded):
                self.qc_decisions.labels(event.decision).inc()

    def refresh(self) -> None:
        """This process's gauges (its pools and, where it runs one, its projector), and
        what its requests moved since the last refresh."""
        self._tallies.flush()
        self.projector_failures.set(self._projector_failures())
        self._count_writer()
        for name, pool in self._pools().items():
            stats = pool.get_stats()
            size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
            self.pool_active.labels(name).set(size - available)
            self.pool_idle.labels(name).set(available)

    def _count_writer(self) -> None:
        stats = self._writer_stats()
        if stats is None:
            return
        with self._writer_lock:
            seen = self._writer_seen
            now = WriterStats(stats.batches, stats.appends, stats.busy_seconds)
            self.ledger_append_batches.inc(max(0, now.batches - seen.batches))
            self.ledger_appends.inc(max(0, now.appends - seen.appends))
            self.ledger_writer_busy.inc(max(0.0, now.busy_seconds - seen.busy_seconds))
            self._writer_seen = now

    def start_refreshing(self, interval: float = 1.0) -> None:
        """Keeps this process's gauges current for scrapes served by other processes."""
        if self.multiprocess:
            self._stop_refreshing.clear()
            threading.Thread(target=self._refresh_loop, args=(interval,), daemon=True).start()

    def stop_refreshing(self) -> None:
        self._stop_refreshing.set()
        self._tallies.flush()  # a stopping worker's last second still counts
        if self.multiprocess:
            mark_process_dead(os.getpid())

    def _refresh_loop(self, interval: float) -> None:
        while not self._stop_refreshing.wait(interval):
            self.refresh()

    def record_projection(self, statuses: list[ProjectionStatus]) -> None:
        for status in statuses:
            self.projection_lag.labels(status.name).set(status.lag)

    def exposition(self) -> bytes:
        self.refresh()
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged)


class HttpMetricsMiddleware:
    """Pure ASGI, so it adds no per-request task or body copy; and its counts go to
    the metrics in bulk (`Metrics.refresh`), not one shared-file write each."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.in_progress = metrics.http_in_progress_now
        self.seconds = metrics.http_seconds_now
        self.requests = metrics.http_requests_now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500
        self.in_progress.up(method)
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_progress.down(method)
            route = scope.get("route")
            # Route templates, not raw paths: lot codes must not become label values.
            path = getattr(route, "path", None) or "unmatched"
            self.seconds.observe(time.perf_counter() - started, method, path)
            self.requests.inc(method, path, str(status))
