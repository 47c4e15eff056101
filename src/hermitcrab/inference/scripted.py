"""A provider that answers what it is told to: the fake model for tests and demos.

It records every request it receives, so a test can assert what the agent sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from hermitcrab.errors import ProviderError
from hermitcrab.inference.base import ChatRequest, Chunk

Reply = str | Callable[[ChatRequest], str] | BaseException


class ScriptedProvider:
    def __init__(
        self,
        name: str = "scripted",
        replies: list[Reply] | None = None,
        delay_seconds: float = 0.0,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self.replies: list[Reply] = list(replies or ["Hello from the scripted model."])
        self.delay_seconds = delay_seconds
        self.gate = gate  # while set and cleared, every request waits on it
        self.requests: list[ChatRequest] = []
        self.started = asyncio.Event()  # set as each request begins; tests clear it
        self._next = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"provider": "scripted", "replies": len(self.replies)}

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        self.started.set()
        reply = self.replies[self._next % len(self.replies)]
        self._next += 1
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(reply, ProviderError):
            raise reply  # as it is: tests script rate limits and outages this way
        if isinstance(reply, BaseException):
            raise ProviderError(f"scripted failure: {reply}")
        text = reply(request) if callable(reply) else reply
        pieces = re.findall(r"\S+\s*|\s+", text) or [""]
        for count, piece in enumerate(pieces, 1):
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            last = count == len(pieces)
            yield Chunk(
                piece,
                finish_reason="stop" if last else None,
                usage={"prompt_tokens": 0, "completion_tokens": len(pieces)} if last else None,
            )
