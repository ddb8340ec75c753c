"""The read-your-writes watermark against a real PostgreSQL: a POST's 201 waits on it, so
its listener must hear every projected batch and must outlive its own connection."""

from __future__ import annotations

import asyncio
import time

from projections import watermark as watermark_module
from projections.projector import PROJECTED_CHANNEL
from projections.watermark import APPLICATION_NAME


def _announce(container, position: int) -> None:
    """What the projector's commit sends, without a projector: the position exists only in
    the notification (projection_tracking stays empty), so only the listener can see it."""
    watermark = container.watermark
    with container.read_pool.connection() as conn:
        payload = f"{watermark.prefix}{position}"
        conn.execute("SELECT pg_notify(%s, %s)", (PROJECTED_CHANNEL, payload))


def _kill_listener(container) -> int:
    with container.read_pool.connection() as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchone()[0]


def test_a_waiter_is_woken_by_the_projectors_notification(container):
    watermark = container.watermark

    async def post_waiting_for_its_write() -> tuple[bool, bool, float]:
        await watermark.start_on_loop()
        try:
            waiting = asyncio.create_task(watermark.wait_for_async(7, timeout=5))
            await asyncio.sleep(0.05)
            early = waiting.done()
            started = time.monotonic()
            await asyncio.to_thread(_announce, container, 7)
            return early, await waiting, time.monotonic() - started
        finally:
            await watermark.stop_on_loop()

    early, woken, waited = asyncio.run(post_waiting_for_its_write())
    assert early is False, "nothing was projected yet"
    assert woken is True
    # Well before the 0.5 s look at projection_tracking, which would find nothing anyway.
    assert waited < 0.4
    assert watermark.position == 7


def test_notifications_of_another_projection_or_schema_move_nothing(container):
    watermark = container.watermark

    async def listen_to_strangers() -> int:
        await watermark.start_on_loop()
        try:
            with container.read_pool.connection() as conn:
                for payload in ("elsewhere:legacy_tables:50", f"{watermark.prefix}x", "50"):
                    conn.execute("SELECT pg_notify(%s, %s)", (PROJECTED_CHANNEL, payload))
            await asyncio.to_thread(_announce, container, 3)
            await watermark.wait_for_async(3, timeout=5)
            return watermark.position
        finally:
            await watermark.stop_on_loop()

    assert asyncio.run(listen_to_strangers()) == 3


def test_the_listener_reconnects_when_its_connection_is_killed(container):
    """A restarted database or a killed backend: the next batch's notification still
    reaches the waiters, on a new connection."""
    watermark = container.watermark

    async def kill_then_announce() -> tuple[int, bool]:
        await watermark.start_on_loop()
        try:
            killed = await asyncio.to_thread(_kill_listener, container)
            deadline = time.monotonic() + 10
            # Announced until heard: notifications sent before it listens again are lost.
            position = 10
            while time.monotonic() < deadline:
                await asyncio.to_thread(_announce, container, position)
                if await watermark.wait_for_async(position, timeout=0.3):
                    return killed, True
                position += 1
            return killed, False
        finally:
            await watermark.stop_on_loop()

    killed, heard = asyncio.run(kill_then_announce())
    assert killed == 1
    assert heard is True
    assert watermark.position >= 10


def test_a_notification_that_arrives_while_the_listener_looks_itself_is_not_lost(
    container, monkeypatch
):
    """While a waiter waits, the listener reads projection_tracking every half second on
    its own connection; a batch announced during that read must still count."""
    watermark = container.watermark

    real_read = watermark_module.read_position_async
    announced: list[int] = []

    async def announcing_read(conn, name):
        if not announced:
            announced.append(21)
            await asyncio.to_thread(_announce, container, 21)
        return await real_read(conn, name)

    async def wait_past_a_look() -> bool:
        await watermark.start_on_loop()
        monkeypatch.setattr(watermark_module, "read_position_async", announcing_read)
        try:
            return await watermark.wait_for_async(21, timeout=3)
        finally:
            await watermark.stop_on_loop()

    assert asyncio.run(wait_past_a_look()) is True
    assert announced == [21], "the batch was announced during the listener's own read"
    assert watermark.position == 21
