"""A provider that answers what it is told to: the fake model for tests and demos.

A reply is text, a `Say` (text and tool calls), a function of the request that returns
either, or an exception to raise. It records every request it receives, so a test can
assert what the agent sent, and it streams tool calls as deltas, as real servers do.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from hermitcrab.errors import ProviderError
from hermitcrab.inference.base import ChatRequest, Chunk, ToolCallDelta


@dataclass(frozen=True)
class Call:
    """A tool call the script makes. `arguments` as text is sent as it is (malformed JSON too)."""

    name: str
    arguments: dict[str, Any] | str

    def json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Say:
    text: str = ""
    calls: tuple[Call, ...] = ()


Reply = str | Say | Callable[[ChatRequest], "str | Say"] | BaseException


class ScriptedProvider:
    def __init__(
        self,
        name: str = "scripted",
        replies: list[Reply] | None = None,
        delay_seconds: float = 0.0,
        gate: asyncio.Event | None = None,
        record: bool = True,
    ) -> None:
        self.name = name
        # Tests read what was asked; a daemon on a scripted model (a bench, a demo) keeps none.
        self.record = record
        self.replies: list[Reply] = list(replies or ["Hello from the scripted model."])
        self.delay_seconds = delay_seconds
        self.gate = gate  # while set and cleared, every request waits on it
        self.requests: list[ChatRequest] = []
        self.started = asyncio.Event()  # set as each request begins; tests clear it
        self._next = 0
        self._calls = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"provider": "scripted", "replies": len(self.replies)}

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if self.record:
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
        said = reply(request) if callable(reply) else reply
        if isinstance(said, str):
            said = Say(said)
        pieces = re.findall(r"\S+\s*|\s+", said.text) if said.text else []
        for piece in pieces:
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            yield Chunk(piece)
        for index, call in enumerate(said.calls):
            self._calls += 1
            arguments = call.json()
            half = len(arguments) // 2  # in two fragments, as servers stream them
            yield Chunk(
                tool_calls=(ToolCallDelta(index, f"call_{self._calls}", call.name, arguments[:half]),)
            )
            yield Chunk(tool_calls=(ToolCallDelta(index, arguments=arguments[half:]),))
        yield Chunk(
            finish_reason="tool_calls" if said.calls else "stop",
            usage={"prompt_tokens": 0, "completion_tokens": len(pieces) + len(said.calls)},
        )


def by_turn_step(replies: list[Any]) -> Callable[[ChatRequest], Say]:
    """One reply function for the config's `after`-keyed replies (ScriptedReply): the next
    reply meant for what the request ends with, its `{last_user}` filled in."""
    counters = {"user": 0, "tool": 0}

    def pick(request: ChatRequest) -> Say:
        last = request.messages[-1] if request.messages else None
        step = "tool" if last is not None and last.role == "tool" else "user"
        fitting = [r for r in replies if isinstance(r, str) or r.after in (None, step)]
        reply = fitting[counters[step] % len(fitting)]
        counters[step] += 1
        said = [m for m in request.messages if m.role == "user"]
        asked = "".join(p.text for p in said[-1].parts if hasattr(p, "text")) if said else ""

        def fill(value: Any) -> Any:
            return value.replace("{last_user}", asked) if isinstance(value, str) else value

        if isinstance(reply, str):
            return Say(fill(reply))
        calls = tuple(Call(c.name, {k: fill(v) for k, v in c.arguments.items()}) for c in reply.calls)
        return Say(fill(reply.text), calls)

    return pick
