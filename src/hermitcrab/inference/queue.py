"""The queue in front of a model: a concurrency limit, priority (a person waiting beats a
scheduled job), and fair turns between sessions (round robin, so one chatty session
cannot starve the others).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from hermitcrab.inference.base import ChatRequest, Chunk, Provider

INTERACTIVE = 0  # a person is waiting
BACKGROUND = 1  # a scheduled job, a heartbeat

# Who a call is for: set by whoever starts the work (a turn, an API request, a job).
CALL_PRIORITY: ContextVar[int] = ContextVar("call_priority", default=INTERACTIVE)
# The session a model call is made for, where there is one: usage is summed per session.
CALL_SESSION: ContextVar[str | None] = ContextVar("call_session", default=None)
CALL_PARTY: ContextVar[str] = ContextVar("call_party", default="-")


class ModelQueue:
    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = concurrency
        self._running = 0
        # priority -> party -> waiting futures; OrderedDict order is the round-robin order.
        self._waiting: dict[int, OrderedDict[str, deque[asyncio.Future[None]]]] = {}
        self._ticket = itertools.count()

    def waiting(self) -> int:
        return sum(len(q) for parties in self._waiting.values() for q in parties.values())

    @asynccontextmanager
    async def slot(self, priority: int, party: str) -> AsyncIterator[None]:
        if self._running < self.concurrency and not self.waiting():
            self._running += 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(priority, OrderedDict()).setdefault(party, deque()).append(future)
            try:
                await future  # _release hands the slot over: _running already counts us
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # we were handed a slot as we were cancelled: pass it on
                else:
                    self._forget(future)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._running -= 1
        for priority in sorted(self._waiting):
            parties = self._waiting[priority]
            while parties:
                party, queue = next(iter(parties.items()))
                future = queue.popleft()
                if queue:
                    parties.move_to_end(party)  # its next call waits for the others' turns
                else:
                    del parties[party]
                if not future.done():
                    self._running += 1
                    future.set_result(None)
                    return
            del self._waiting[priority]

    def _forget(self, future: asyncio.Future[None]) -> None:
        for priority, parties in list(self._waiting.items()):
            for party, queue in list(parties.items()):
                if future in queue:
                    queue.remove(future)
                if not queue:
                    del parties[party]
            if not parties:
                del self._waiting[priority]


class QueuedProvider:
    """A provider whose calls wait their turn in a ModelQueue."""

    def __init__(self, provider: Provider, queue: ModelQueue) -> None:
        self.provider = provider
        self.queue = queue
        self.name = provider.name

    async def start(self) -> None:
        await self.provider.start()

    async def close(self) -> None:
        await self.provider.close()

    def describe(self) -> dict[str, Any]:
        queue = self.queue
        return {**self.provider.describe(), "queued": queue.waiting(), "concurrency": queue.concurrency}

    @property
    def config(self) -> Any:
        return getattr(self.provider, "config", None)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        async with self.queue.slot(CALL_PRIORITY.get(), CALL_PARTY.get()):
            async for chunk in self.provider.stream(request):
                yield chunk
