"""The scheduler's sense of time, injectable: the system's, one a test moves by hand, or
one that runs a simulated day in seconds (the soak)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, as time.time()."""
        ...

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        """Return after `seconds` of this clock's time, or as soon as `wake` is set."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(seconds, 0.0))


class SimulatedClock:
    """Time that runs `speed` times faster than the wall's, from `start`."""

    def __init__(self, start: float, speed: float) -> None:
        self._start = start
        self._speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * self._speed

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(seconds, 0.0) / self._speed)


class ManualClock:
    """Time that moves only when a test calls advance() or set() (from the loop's thread)."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._waiters: list[asyncio.Future[None]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        self._now = when
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, seconds: float, wake: asyncio.Event) -> None:
        until = self._now + max(seconds, 0.0)
        while self._now < until and not wake.is_set():
            moved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(moved)
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait([moved, woken], return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                moved.cancel()
