"""`serve` fits every process's pools into the connections PostgreSQL has free."""

from __future__ import annotations

import pytest

from api.cli import pool_size_within


@pytest.mark.parametrize(
    ("free", "processes", "wanted", "size"),
    [
        (300, 3, 10, 10),  # room to spare: the configured size stands
        (96, 5, 10, 5),  # four workers and the projector on a default server: 19 each
        (96, 3, 10, 9),  # two workers and the projector: 32 each, three pools of nine
        (5, 5, 10, 2),  # nearly full: two per pool, the least that serves at all
        (50, 1, 100, 15),  # one process never asks for more than it may have
    ],
)
def test_each_process_gets_three_pools_and_its_own_few_connections(free, processes, wanted, size):
    assert pool_size_within(free, processes, wanted) == size


def test_sizes_that_fit_leave_the_processes_within_the_free_connections():
    for free in range(20, 400, 7):
        for processes in range(1, 9):
            size = pool_size_within(free, processes, 10)
            assert size == 2 or processes * (3 * size + 3) <= free
