"""Prometheus metrics: business counters, traceability latency, DB pools, HTTP traffic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class PoolCollector(Collector):
    def __init__(self, pools: Callable[[], dict[str, ConnectionPool]]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "flowviz_db_pool_connections_active", "Connections lent out", labels=["pool"]
        )
        idle = GaugeMetricFamily(
            "flowviz_db_pool_connections_idle", "Connections waiting in the pool", labels=["pool"]
        )
        for name, pool in self._pools().items():
            stats = pool.get_stats()
            size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
            active.add_metric([name], size - available)
            idle.add_metric([name], available)
        yield active
        yield idle


class Metrics:
    def __init__(self, pools: Callable[[], dict[str, ConnectionPool]]) -> None:
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
        self.http_requests = Counter(
            "flowviz_http_requests", "HTTP requests", ["method", "path", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "flowviz_http_request_duration_seconds", "HTTP request latency", ["method", "path"],
            registry=r,
        )
        self.http_in_progress = Gauge(
            "flowviz_http_requests_in_progress", "HTTP requests being served", ["method"],
            registry=r,
        )
        r.register(PoolCollector(pools))


class HttpMetricsMiddleware:
    """Pure ASGI, so it adds no per-request task or body copy."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500
        in_progress = self.metrics.http_in_progress.labels(method)
        in_progress.inc()
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            in_progress.dec()
            route = scope.get("route")
            # Route templates, not raw paths: lot codes must not become label values.
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.http_seconds.labels(method, path).observe(time.perf_counter() - started)
            self.metrics.http_requests.labels(method, path, str(status)).inc()
