"""The FastAPI application: `create_app()` is the factory uvicorn and the tests call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from api.composition import Container
from api.errors import install_error_handlers
from api.fast_post_lots import PATH, FastPostLots
from api.fast_trace import FastTraceability
from api.metrics import HttpMetricsMiddleware
from api.responses import LegacyJSONResponse
from api.routes import audit, auth, genealogy, health, lot_browser, lots
from api.settings import Settings, get_settings

_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class _FlowVizAPI(FastAPI):
    """FastAPI, with the metrics and the hot routes' fast paths in front of its own stack.

    Middleware added with `add_middleware` runs inside the framework's own layers (server
    errors, telemetry, body limit), which every request passed through even when a fast
    path answered it: about 7% of a worker's CPU per traceability read (3 alternated
    runs). Wrapped outside them, a fast path skips them; every other request still passes
    through all of them, and the metrics layer still sees every request and its status."""

    outer_layers: Sequence[Callable[[ASGIApp], ASGIApp]] = ()  # innermost first

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for wrap in self.outer_layers:
            app = wrap(app)
        return app


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """Builds the app on a container; one it builds itself it also closes at shutdown."""
    owned = container is None
    built = container or Container(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        built.start()
        await built.open_async()
        try:
            yield
        finally:
            await built.close_async()
            if owned:
                built.close()

    # Off, every part of FastAPI's native telemetry is off; on, its defaults (all on).
    telemetry = None if built.settings.flowviz_opentelemetry else _NO_TELEMETRY
    app = _FlowVizAPI(
        title="FlowViz Ledger",
        version="0.1.0",
        description="Traceability ledger: lots, genealogy and QC decisions as immutable events.",
        lifespan=lifespan,
        default_response_class=LegacyJSONResponse,
        telemetry=telemetry,
    )
    app.state.container = built
    install_error_handlers(app)
    for module in (health, auth, audit, genealogy, lots, lot_browser):
        app.include_router(module.router)
    trace_route = _route(lots.router, "GET", lots.TRACEABILITY_PATH)
    post_route = _route(lots.router, "POST", PATH)
    app.outer_layers = [
        lambda inner: FastTraceability(inner, container=built, route=trace_route),
        lambda inner: FastPostLots(inner, container=built, route=post_route),
        lambda inner: HttpMetricsMiddleware(inner, metrics=built.metrics),
    ]
    return app


def _route(router: APIRouter, method: str, path: str) -> BaseRoute:
    return next(
        r for r in router.routes
        if getattr(r, "path", None) == path and method in getattr(r, "methods", ())
    )
