"""/metrics: what the plant's Prometheus scrapes, without logging in."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ledger.values import Role

TRACE_ROUTE = 'path="/api/traceability/{lot_code:path}"'


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, 0 when it is not there yet."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def test_metrics_are_scraped_without_a_token(client):
    """Prometheus has no account: /metrics answers it, and lists the pool gauges."""
    text = scrape(client)
    for pool in ("ledger", "read"):
        assert f'flowviz_db_pool_connections_active{{pool="{pool}"}}' in text
        assert f'flowviz_db_pool_connections_idle{{pool="{pool}"}}' in text
    assert sample(text, "flowviz_db_pool_connections_idle", pool="read") >= 1


@pytest.mark.parametrize("lot_type", ["RAW", "MIX", "FG"])
def test_each_registered_lot_counts_once_under_its_type(client, auth, lot_type):
    """Registering a lot of a type moves that type's counter by one, and no other."""
    headers = auth(Role.OPERATOR)
    before = scrape(client)
    created = client.post(
        "/api/lots", json={"lot_code": f"M-{lot_type}-1", "lot_type": lot_type}, headers=headers
    )
    assert created.status_code == 201, created.text
    refused = client.post(
        "/api/lots", json={"lot_code": f"M-{lot_type}-1", "lot_type": lot_type}, headers=headers
    )
    assert refused.status_code == 409
    after = scrape(client)

    name = "flowviz_lots_registered_total"
    assert f'{name}{{lot_type="{lot_type}"}} 1.0' in after
    assert sample(after, name, lot_type=lot_type) == sample(before, name, lot_type=lot_type) + 1
    others = [t for t in ("RAW", "MIX", "FG") if t != lot_type]
    assert all(sample(after, name, lot_type=t) == 0 for t in others)


@pytest.mark.parametrize(
    ("decision", "notes"), [("PASS", None), ("HOLD", "Waiting for lab results")]
)
def test_each_qc_decision_counts_under_its_verdict(client, auth, decision, notes):
    """The inspector's decision is counted under its verdict once it is recorded."""
    headers = auth(Role.MANAGER)
    lot = client.post("/api/lots", json={"lot_code": "M-QC-1"}, headers=headers)
    assert lot.status_code == 201, lot.text
    recorded = client.post(
        "/api/qc-decisions",
        json={"lot_id": lot.json()["id"], "decision": decision, "notes": notes},
        headers=headers,
    )
    assert recorded.status_code == 201, recorded.text

    text = scrape(client)
    assert f'flowviz_qc_decisions_total{{decision="{decision}"}} 1.0' in text
    assert sample(text, "flowviz_qc_decisions_total", decision="FAIL") == 0


def test_traceability_queries_fill_the_latency_histogram(client, auth):
    """Every trace, found or not, is timed into the traceability histogram's buckets."""
    headers = auth(Role.VIEWER)
    assert client.post("/api/lots", json={"lot_code": "M-TRACE-1"},
                       headers=auth(Role.OPERATOR)).status_code == 201
    assert client.get("/api/traceability/M-TRACE-1", headers=headers).status_code == 200
    assert client.get("/api/traceability/NO-SUCH-LOT", headers=headers).status_code == 404

    text = scrape(client)
    name = "flowviz_traceability_query_duration_seconds"
    assert re.search(rf'^{name}_bucket{{le="0\.001"}} \d', text, re.M)
    assert f'{name}_bucket{{le="+Inf"}} 2.0' in text
    assert sample(text, f"{name}_count") == 2
    assert sample(text, f"{name}_sum") > 0


@pytest.mark.parametrize(
    "lot_code", ["SECRET-CUSTOMER-LOT-77", "RAW/2024/BATCH-9", "Döner-Spieß-1"]
)
def test_http_metrics_name_the_route_template_never_the_lot_code(client, auth, lot_code):
    """Traces of a customer's lot codes are counted under the route template, so lot
    codes never become label values (nor leak into the scrape)."""
    headers = auth(Role.VIEWER)
    assert client.post("/api/lots", json={"lot_code": lot_code},
                       headers=auth(Role.OPERATOR)).status_code == 201
    assert client.get(f"/api/traceability/{lot_code}", headers=headers).status_code == 200
    assert client.get(f"/api/traceability/{lot_code}-X", headers=headers).status_code == 404

    text = scrape(client)
    assert lot_code not in text
    assert lot_code.split("-")[-2] not in text
    for status in ("200", "404"):
        assert sample(
            text, "flowviz_http_requests_total",
            method="GET", path="/api/traceability/{lot_code:path}", status=status,
        ) == 1
    assert TRACE_ROUTE in text
    assert sample(
        text, "flowviz_http_request_duration_seconds_count",
        method="GET", path="/api/traceability/{lot_code:path}",
    ) == 2
    assert sample(
        text, "flowviz_http_requests_total", method="POST", path="/api/lots", status="201"
    ) >= 1
    # The scrape itself is in flight while it is rendered.
    assert sample(text, "flowviz_http_requests_in_progress", method="GET") == 1


def test_requests_to_unknown_paths_share_one_label(client):
    """Scanners probing random URLs cannot grow the metrics: all land under "unmatched"."""
    for n in range(5):
        assert client.get(f"/wp-admin/probe-{n}.php").status_code == 404
    text = scrape(client)
    assert "probe-" not in text
    assert sample(
        text, "flowviz_http_requests_total", method="GET", path="unmatched", status="404"
    ) == 5


def test_lots_and_decisions_written_outside_http_count_when_they_commit(client, app_container):
    """The counters follow the ledger's commits, not the HTTP routes."""
    from decimal import Decimal  # noqa: PLC0415

    from ledger.commands import NewLot, NewQcDecision  # noqa: PLC0415

    before = scrape(client)
    lot = app_container.ledger.register_lot(
        NewLot(lot_code="FRZ-CLI", lot_type="FRZ", weight_kg=Decimal(5)), actor_id=None
    ).aggregate
    app_container.ledger.record_qc_decision(
        NewQcDecision(lot_id=lot.id, decision="FAIL", notes="freezer alarm at 03:00"),
        actor_id=None,
    )
    after = scrape(client)

    lots = "flowviz_lots_registered_total"
    assert sample(after, lots, lot_type="FRZ") == sample(before, lots, lot_type="FRZ") + 1
    qc = "flowviz_qc_decisions_total"
    assert sample(after, qc, decision="FAIL") == sample(before, qc, decision="FAIL") + 1


def test_the_projection_lag_shows_how_far_the_read_tables_are_behind(make_container):
    """An operator's alert: events recorded that the read tables do not show yet."""
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from api.main import create_app  # noqa: PLC0415
    from ledger.commands import NewLot  # noqa: PLC0415

    stalled = make_container(run_projector=False)
    for code in ("RAW-1", "RAW-2"):
        stalled.ledger.register_lot(NewLot(lot_code=code), actor_id=None)
    with TestClient(create_app(container=stalled)) as client:
        behind = scrape(client)
        stalled.projector.catch_up()
        caught_up = scrape(client)

    lag = "flowviz_projection_lag_events"
    assert sample(behind, lag, projection="legacy_tables") == 4  # two lots, two code claims
    assert sample(caught_up, lag, projection="legacy_tables") == 0
    assert "flowviz_projector_failures 0.0" in caught_up


def test_the_group_commit_writer_shows_its_batches_and_busy_time(client, auth):
    """Operators see what the bench's (d) breakdown shows: appends, the transactions that
    carried them (batch size = appends / batches) and the writer's busy seconds."""
    headers = auth(Role.OPERATOR)  # the operator's own registration is an append too
    before = scrape(client)
    for n in range(3):
        created = client.post("/api/lots", json={"lot_code": f"W-RAW-{n}"}, headers=headers)
        assert created.status_code == 201, created.text
    after = scrape(client)

    def moved(name: str) -> float:
        return sample(after, name) - sample(before, name)

    assert moved("flowviz_ledger_appends_total") == 3
    assert 1 <= moved("flowviz_ledger_append_batches_total") <= 3
    assert moved("flowviz_ledger_writer_busy_seconds_total") > 0


def test_fastapi_native_telemetry_is_off_unless_the_deployment_asks_for_it(make_container):
    """The service's metrics are Prometheus's. FastAPI's own OpenTelemetry, which looks
    for a configured provider on every request, runs only under FLOWVIZ_OPENTELEMETRY."""
    from api.main import create_app  # noqa: PLC0415

    parts = ("tracing", "metrics", "logs")
    off = create_app(container=make_container())
    on = create_app(container=make_container(flowviz_opentelemetry=True))
    assert not any(off._telemetry[part] for part in parts)
    assert all(on._telemetry[part] for part in parts)


def test_a_request_failing_unexpectedly_is_a_plain_500_counted_under_its_route(
    client, auth, app_container, monkeypatch
):
    """A read that fails in a way nobody foresaw answers a plain 500 (detail and error,
    no trace, no SQL), and the scrape counts it under its route, where an alert sees it."""
    headers = auth(Role.VIEWER)

    async def broken(lot_code: str) -> None:
        raise RuntimeError('SELECT * FROM lot_json: relation "lot_json" does not exist')

    monkeypatch.setattr(app_container.read_model, "traceability", broken)
    # The fixture's client re-raises server errors in the test; a scanner sees the answer.
    scanner = TestClient(client.app, raise_server_exceptions=False)

    response = scanner.get("/api/traceability/RAW-ANY", headers=headers)

    assert response.status_code == 500
    assert set(response.json()) == {"detail", "error"}
    assert "SELECT" not in response.text and "Traceback" not in response.text
    assert sample(
        scrape(client), "flowviz_http_requests_total",
        method="GET", path="/api/traceability/{lot_code:path}", status="500",
    ) == 1
