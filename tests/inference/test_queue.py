"""The model queue: at most `concurrency` calls at once, a person before a job, and fair
turns between sessions."""

from __future__ import annotations

import asyncio

from hermitcrab.inference.queue import BACKGROUND, INTERACTIVE, ModelQueue


async def _served_order(queue: ModelQueue, calls: list[tuple[str, int, str]]) -> list[str]:
    """Hold the only slot, queue `calls` (name, priority, party) in order, then release."""
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with queue.slot(INTERACTIVE, "holder"):
            await release.wait()

    async def call(name: str, priority: int, party: str) -> None:
        async with queue.slot(priority, party):
            order.append(name)
            await asyncio.sleep(0)

    first = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    tasks = []
    for name, priority, party in calls:
        tasks.append(asyncio.ensure_future(call(name, priority, party)))
        await asyncio.sleep(0)  # queued in this order
    assert queue.waiting() == len(calls)
    release.set()
    await asyncio.gather(first, *tasks)
    return order


def test_a_person_goes_before_a_job() -> None:
    calls = [("job1", BACKGROUND, "cron"), ("job2", BACKGROUND, "cron"), ("person", INTERACTIVE, "chat")]
    assert asyncio.run(_served_order(ModelQueue(1), calls)) == ["person", "job1", "job2"]


def test_sessions_take_fair_turns() -> None:
    calls = [(name, INTERACTIVE, name[0]) for name in ("a1", "a2", "a3", "b1", "c1")]
    assert asyncio.run(_served_order(ModelQueue(1), calls)) == ["a1", "b1", "c1", "a2", "a3"]


def test_concurrency_limit_holds() -> None:
    async def scenario() -> int:
        queue = ModelQueue(2)
        inside = peak = 0

        async def call() -> None:
            nonlocal inside, peak
            async with queue.slot(INTERACTIVE, "p"):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(call() for _ in range(7)))
        return peak

    assert asyncio.run(scenario()) == 2


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> list[str]:
        queue = ModelQueue(1)
        order: list[str] = []
        release = asyncio.Event()

        async def hold() -> None:
            async with queue.slot(INTERACTIVE, "h"):
                await release.wait()

        async def call(name: str) -> None:
            async with queue.slot(INTERACTIVE, name):
                order.append(name)

        holder = asyncio.ensure_future(hold())
        await asyncio.sleep(0)
        quitter = asyncio.ensure_future(call("quitter"))
        stayer = asyncio.ensure_future(call("stayer"))
        await asyncio.sleep(0)
        quitter.cancel()
        release.set()
        await asyncio.gather(holder, stayer)
        await asyncio.gather(quitter, return_exceptions=True)
        async with queue.slot(INTERACTIVE, "after"):  # the slot was not leaked
            order.append("after")
        return order

    assert asyncio.run(scenario()) == ["stayer", "after"]
