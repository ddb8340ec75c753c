"""How many processes `serve` runs, and how it fits their pools into the connections
PostgreSQL has free."""

from __future__ import annotations

import pytest

from api.cli import pool_size_within


@pytest.mark.parametrize(
    ("free", "workers", "beside", "wanted", "size"),
    [
        (96, 1, True, 10, 10),  # one worker and the projector: the default on two cores
        (96, 1, False, 10, 10),  # one worker, the projector elsewhere: room to spare
        (96, 2, True, 10, 10),  # two workers and the projector on a default server
        (96, 4, True, 10, 5),  # four workers and the projector: 14 pools in 79
        (96, 4, False, 10, 6),  # four workers, the projector elsewhere: 12 pools in 79
        (20, 4, True, 10, 2),  # nearly full: two per pool, the least that serves at all
        (500, 1, False, 100, 100),  # never more than asked
    ],
)
def test_the_pools_of_every_process_fit_in_the_free_connections(
    free, workers, beside, wanted, size
):
    assert pool_size_within(free, workers, beside, wanted) == size


def test_sizes_that_fit_leave_every_process_within_the_free_connections():
    for free in range(20, 400, 7):
        for workers in range(1, 9):
            for beside in (True, False):
                size = pool_size_within(free, workers, beside, 10)
                needed = workers * (3 * size + 4) + (2 * size if beside else 0) + 1
                assert size == 2 or needed <= free, (free, workers, beside, size)


@pytest.mark.parametrize(
    ("cores", "workers"), [(None, 1), (1, 1), (2, 1), (3, 2), (5, 4), (64, 4)]
)
def test_serve_leaves_a_core_to_the_projector_and_runs_at_most_four_workers(
    monkeypatch, cores, workers
):
    """The projector's process and PostgreSQL share one core, the workers take the others,
    and there is always one; a large machine still starts four by default rather than a
    set of pools per core (`--workers N` for more)."""
    from api import cli  # noqa: PLC0415

    monkeypatch.setattr(cli.os, "cpu_count", lambda: cores)
    assert cli.default_workers() == workers
