"""What every request moves, counted in plain Python and handed to the metrics in bulk.

Under several workers each prometheus_client update takes a lock, asks the kernel for the
process id and writes the shared file: the HTTP layer's four updates a request (in
progress up and down, the duration, the count) cost about 12 us of a worker's CPU, of a
POST's 300-400 on these machines. Here a request adds to this process's own totals, and
`flush` moves what they gained since the last flush into the metrics: every second from
the refresh thread, and before every scrape, so that a scrape of this process is exact
and another process's part of it at most a second old. Each tally adds and copies under a
lock of its own, so any thread may add to it while another flushes.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

Labels = tuple[str, ...]


def _series(metric: Any, labels: Labels) -> Any:
    # A metric declared without labels is its own only series.
    return metric.labels(*labels) if labels else metric


class CountTally:
    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._lock = threading.Lock()
        self._totals: dict[Labels, int] = {}
        self._moved: dict[Labels, int] = {}

    def inc(self, *labels: str) -> None:
        with self._lock:
            self._totals[labels] = self._totals.get(labels, 0) + 1

    def flush(self) -> None:
        with self._lock:
            totals = self._totals.copy()
        for labels, total in totals.items():
            gained = total - self._moved.get(labels, 0)
            if gained:
                _series(self._metric, labels).inc(gained)
                self._moved[labels] = total


class LevelTally:
    """A gauge of things under way: the level itself is what a flush sets."""

    def __init__(self, metric: Gauge) -> None:
        self._metric = metric
        self._lock = threading.Lock()
        self._levels: dict[Labels, int] = {}

    def up(self, *labels: str) -> None:
        with self._lock:
            self._levels[labels] = self._levels.get(labels, 0) + 1

    def down(self, *labels: str) -> None:
        with self._lock:
            self._levels[labels] -= 1

    def flush(self) -> None:
        with self._lock:
            levels = self._levels.copy()
        for labels, level in levels.items():
            _series(self._metric, labels).set(level)


class DurationTally:
    """A histogram's observations: per series its sum, then one count per bucket."""

    def __init__(self, metric: Histogram) -> None:
        self._metric = metric
        self._bounds: list[float] = list(metric._upper_bounds)
        self._lock = threading.Lock()
        self._totals: dict[Labels, list[Any]] = {}
        self._moved: dict[Labels, list[Any]] = {}

    def observe(self, seconds: float, *labels: str) -> None:
        # The first bucket whose bound is not below the value, as `Histogram.observe`.
        bucket = 1 + bisect_left(self._bounds, seconds)
        with self._lock:
            totals = self._totals.get(labels)
            if totals is None:
                totals = self._totals[labels] = [0.0] + [0] * len(self._bounds)
            totals[0] += seconds
            totals[bucket] += 1

    def flush(self) -> None:
        with self._lock:
            copied = {labels: list(totals) for labels, totals in self._totals.items()}
        for labels, now in copied.items():
            before = self._moved.get(labels) or [0.0] + [0] * len(self._bounds)
            if now == before:
                continue
            # A histogram's series has no bulk `observe`: its sum and its buckets are the
            # values `observe` itself adds to.
            series = _series(self._metric, labels)
            series._sum.inc(now[0] - before[0])
            for bucket, (count, counted) in enumerate(zip(now[1:], before[1:], strict=True)):
                if count != counted:
                    series._buckets[bucket].inc(count - counted)
            self._moved[labels] = now


class Tallies:
    def __init__(self, *tallies: CountTally | LevelTally | DurationTally) -> None:
        self._tallies = tallies
        self._flushing = threading.Lock()  # the refresh thread and a scrape may overlap

    def flush(self) -> None:
        with self._flushing:
            for tally in self._tallies:
                tally.flush()
