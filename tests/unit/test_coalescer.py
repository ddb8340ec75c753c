"""Concurrent look-ups share one statement; each caller still gets its own answer."""

from __future__ import annotations

import asyncio

from projections.coalescer import Coalescer


def test_lookups_that_arrive_together_are_answered_by_one_fetch():
    fetched: list[list[str]] = []

    async def fetch(keys: list[str]) -> dict[str, str]:
        fetched.append(sorted(keys))
        await asyncio.sleep(0)
        return {k: k.lower() for k in keys if k != "NONE"}

    async def scenario():
        coalescer = Coalescer(fetch)
        codes = ["MIX-1", "RAW-2", "MIX-1", "NONE"]
        return await asyncio.gather(*(coalescer.get(k) for k in codes))

    assert asyncio.run(scenario()) == ["mix-1", "raw-2", "mix-1", None]
    assert fetched == [["MIX-1", "NONE", "RAW-2"]]


def test_lookups_arriving_while_a_fetch_runs_go_into_the_next_one():
    fetched: list[list[int]] = []

    async def scenario():
        gate = asyncio.Event()

        async def fetch(keys: list[int]) -> dict[int, int]:
            fetched.append(sorted(keys))
            await gate.wait()
            return {k: k * 10 for k in keys}

        coalescer = Coalescer(fetch)
        first = asyncio.gather(coalescer.get(1), coalescer.get(2))
        await asyncio.sleep(0.01)  # the first fetch is now in flight
        second = asyncio.gather(coalescer.get(3))
        await asyncio.sleep(0.01)
        gate.set()
        return await first, await second

    assert asyncio.run(scenario()) == ([10, 20], [30])
    assert fetched == [[1, 2], [3]]


def test_a_failed_fetch_fails_every_waiter_and_the_next_fetch_works():
    calls = 0

    async def fetch(keys: list[str]) -> dict[str, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("read replica went away")
        return {k: "ok" for k in keys}

    async def scenario():
        coalescer = Coalescer(fetch)
        results = await asyncio.gather(coalescer.get("a"), coalescer.get("b"),
                                       return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        return await coalescer.get("a")

    assert asyncio.run(scenario()) == "ok"


def test_each_event_loop_is_answered_on_its_own_loop():
    async def fetch(keys: list[str]) -> dict[str, str]:
        return {k: k for k in keys}

    coalescer = Coalescer(fetch)
    assert asyncio.run(coalescer.get("x")) == "x"
    assert asyncio.run(coalescer.get("y")) == "y"  # a second loop, as a new TestClient has
    assert not any(coalescer._waiting.values())  # nobody left waiting on a closed loop
