"""Request counts kept in plain Python reach Prometheus exactly as direct updates would."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from api.metric_tallies import CountTally, DurationTally, LevelTally, Tallies

# Durations on both sides of bucket bounds, on a bound itself, and beyond the last one.
DURATIONS = [0.004, 0.005, 0.0051, 0.2, 0.0, 12.0, 0.075, 0.1, 0.0999]


def _http_metrics() -> tuple[CollectorRegistry, Counter, Histogram, Gauge]:
    registry = CollectorRegistry()
    return (
        registry,
        Counter("requests", "HTTP requests", ["method", "path", "status"], registry=registry),
        Histogram("seconds", "HTTP latency", ["method", "path"], registry=registry),
        Gauge("in_progress", "being served", ["method"], registry=registry),
    )


def _scraped(registry: CollectorRegistry) -> list[str]:
    """The exposition, less the time each series was first seen."""
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_a_shift_of_requests_scrapes_the_same_as_direct_updates():
    direct, requests, seconds, in_progress = _http_metrics()
    tallied, *metrics = _http_metrics()
    counted, timed, level = CountTally(metrics[0]), DurationTally(metrics[1]), LevelTally(
        metrics[2]
    )
    tallies = Tallies(counted, timed, level)

    for n, duration in enumerate(DURATIONS):
        path, status = ("/api/lots", "201") if n % 3 else ("/api/traceability", "404")
        requests.labels("POST", path, status).inc()
        seconds.labels("POST", path).observe(duration)
        counted.inc("POST", path, status)
        timed.observe(duration, "POST", path)
        if n % 4 == 0:
            tallies.flush()  # scrapes in between change nothing of the totals
    in_progress.labels("GET").set(1)
    level.up("GET")
    level.up("POST")
    level.down("POST")
    in_progress.labels("POST").set(0)
    tallies.flush()
    tallies.flush()

    assert _scraped(tallied) == _scraped(direct)


def test_counts_added_by_several_threads_while_another_flushes_are_moved_once_each():
    registry = CollectorRegistry()
    counter = Counter("lots", "Lots registered", ["lot_type"], registry=registry)
    histogram = Histogram("seconds", "HTTP latency", ["method"], registry=registry)
    counted, timed = CountTally(counter), DurationTally(histogram)
    tallies = Tallies(counted, timed)
    stop = threading.Event()

    def scrape_all_the_time() -> None:
        while not stop.is_set():
            tallies.flush()

    def register_lots() -> None:
        for _ in range(20_000):
            counted.inc("RAW")
            timed.observe(0.003, "POST")

    scraper = threading.Thread(target=scrape_all_the_time)
    terminals = [threading.Thread(target=register_lots) for _ in range(4)]
    scraper.start()
    for terminal in terminals:
        terminal.start()
    for terminal in terminals:
        terminal.join()
    stop.set()
    scraper.join()
    tallies.flush()

    assert registry.get_sample_value("lots_total", {"lot_type": "RAW"}) == 80_000
    assert registry.get_sample_value("seconds_count", {"method": "POST"}) == 80_000
    assert registry.get_sample_value("seconds_bucket", {"method": "POST", "le": "0.005"}) == (
        80_000
    )


def test_a_metric_without_labels_is_tallied_as_its_only_series():
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    Histogram("trace_seconds", "Traceability query time", registry=direct).observe(0.004)
    Counter("scrapes", "Scrapes", registry=direct).inc()
    timed = DurationTally(Histogram("trace_seconds", "Traceability query time", registry=tallied))
    counted = CountTally(Counter("scrapes", "Scrapes", registry=tallied))
    timed.observe(0.004)
    counted.inc()
    Tallies(timed, counted).flush()

    assert _scraped(tallied) == _scraped(direct)
