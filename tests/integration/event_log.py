"""The raw event log, as an auditor would dump it."""

from __future__ import annotations


def event_log(container) -> list[tuple]:
    with container.read_pool.connection() as conn:
        return conn.execute(
            f"SELECT notification_id, originator_id, originator_version, topic, state"
            f" FROM {container.events_table} ORDER BY notification_id"
        ).fetchall()
