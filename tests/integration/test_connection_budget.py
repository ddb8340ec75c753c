"""What PostgreSQL can still accept, read before `serve` sizes its pools."""

from __future__ import annotations

import contextlib

import psycopg

from projections.db import free_connections


def test_every_open_session_takes_one_free_connection(database_url):
    """Two more sessions leave two fewer free (retried: another test's server may still
    be closing its own sessions while this one counts)."""
    seen = []
    for _ in range(5):
        before = free_connections(database_url)
        with contextlib.ExitStack() as stack:
            for _ in range(2):
                stack.enter_context(psycopg.connect(database_url))
            during = free_connections(database_url)
        seen.append((before, during))
        if during == before - 2:
            break
    assert seen[-1][1] == seen[-1][0] - 2, seen
    assert 0 < seen[-1][1] < 10_000
