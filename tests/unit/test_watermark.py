"""The read-your-writes watermark, without a database: how waiters are woken."""

import asyncio

import pytest

from projections.watermark import ProjectionWatermark, _resolve


def test_an_async_waiter_is_woken_when_the_projector_reaches_its_position():
    watermark = ProjectionWatermark("unused", "public")

    async def scenario():
        waiting = asyncio.create_task(watermark.wait_for_async(5, timeout=5))
        await asyncio.sleep(0.01)
        watermark._advance(4)
        await asyncio.sleep(0.01)
        assert not waiting.done()
        watermark._advance(5)
        return await waiting

    assert asyncio.run(scenario()) is True


def test_an_async_waiter_gives_up_after_its_timeout():
    watermark = ProjectionWatermark("unused", "public")
    assert asyncio.run(watermark.wait_for_async(1, timeout=0.05)) is False
    assert watermark._async_waiters == []


def test_a_waiter_woken_in_time_is_not_answered_again_by_its_timeout():
    watermark = ProjectionWatermark("unused", "public")
    failures = []

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: failures.append(context))
        waiting = asyncio.create_task(watermark.wait_for_async(1, timeout=0.05))
        await asyncio.sleep(0.01)
        watermark._advance(1)
        answer = await waiting
        await asyncio.sleep(0.1)  # past the timeout: its timer must not answer a second time
        return answer

    assert asyncio.run(scenario()) is True
    assert failures == []
    assert watermark._async_waiters == []


def test_a_cancelled_waiter_leaves_no_waiter_behind():
    """A client that hangs up cancels its request's wait, not anyone else's."""
    watermark = ProjectionWatermark("unused", "public")

    async def scenario():
        waiting = asyncio.create_task(watermark.wait_for_async(1, timeout=5))
        staying = asyncio.create_task(watermark.wait_for_async(1, timeout=5))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert len(watermark._async_waiters) == 1
        watermark._advance(1)
        return await staying

    assert asyncio.run(scenario()) is True
    assert watermark._async_waiters == []


def test_a_waiter_whose_event_loop_has_closed_does_not_break_the_listener():
    watermark = ProjectionWatermark("unused", "public")
    loop = asyncio.new_event_loop()
    watermark._async_waiters.append((3, loop, loop.create_future()))
    loop.close()
    watermark._advance(3)  # must not raise: the listener would die with it
    assert watermark.position == 3


@pytest.mark.parametrize(
    ("listener", "expected_wakes"), [("a thread of its own", 1), ("the loop's own task", 0)]
)
def test_one_projected_batch_wakes_each_event_loop_once_for_all_its_waiters(
    listener, expected_wakes
):
    """Thirty POSTs on one worker wait for the same batch: one wake-up of their loop (each
    costs a write to its pipe) from a listening thread, none from a listener on that loop;
    each of them is answered, and a later position still waits."""
    watermark = ProjectionWatermark("unused", "public")
    wakes = []

    async def scenario():
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):
            if callback is _resolve:  # not the executor's own hand-back of its result
                wakes.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting
        waiting = [
            asyncio.create_task(watermark.wait_for_async(p, timeout=5)) for p in range(1, 31)
        ]
        later = asyncio.create_task(watermark.wait_for_async(31, timeout=5))
        await asyncio.sleep(0.01)
        if listener == "a thread of its own":
            await loop.run_in_executor(None, watermark._advance, 30)
        else:
            watermark._advance(30)
        answers = await asyncio.gather(*waiting)
        await asyncio.sleep(0.01)
        assert not later.done()
        later.cancel()
        return answers

    assert asyncio.run(scenario()) == [True] * 30
    assert len(wakes) == expected_wakes
