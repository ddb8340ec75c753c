"""(d)'s load: raw lots registered by concurrent callers, shared by the bench's rate and
the instruction count, so that both measure the same registrations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import uvloop

from ledger.application import Ledger
from ledger.commands import NewLot


def register_raw_lots(ledger: Ledger, callers: int, *, event_loop: bool,
                      go_on: Callable[[int], bool]) -> list[int]:
    """Registrations made by each caller: threads calling `register_lot`, or with
    `event_loop` as many tasks on one uvloop loop (the loop uvicorn runs the API on)
    awaiting `register_lot_async`, as the API's POST does. A caller goes on while
    `go_on(registrations made so far)`."""
    counts = [0] * callers

    def work(n: int) -> None:
        i = 0
        while go_on(i):
            ledger.register_lot(NewLot(lot_code=f"L-{n}-{i}", weight_kg=Decimal(1)), actor_id=None)
            i += 1
        counts[n] = i

    async def task(n: int) -> None:
        i = 0
        while go_on(i):
            new = NewLot(lot_code=f"A-{n}-{i}", weight_kg=Decimal(1))
            await ledger.register_lot_async(new, actor_id=None)
            i += 1
        counts[n] = i

    async def tasks() -> None:
        await asyncio.gather(*(task(n) for n in range(callers)))

    if event_loop:
        uvloop.run(tasks())
    else:
        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(work, range(callers)))
    return counts
