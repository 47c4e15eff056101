"""A model route: the agent's model, then its fallbacks, in order.

Fails over on 429, 5xx, connection errors and timeouts (ProviderUnavailable), honouring
Retry-After when every model of the route asked to wait. Once a model has started to
answer, its answer is the answer: switching mid-stream would show a person two replies.
Usage of every call goes to `on_usage`; a spend cap is checked before each call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hermitcrab.errors import ProviderError
from hermitcrab.inference.base import ChatRequest, Chunk, Provider

log = logging.getLogger("hermitcrab.router")


@dataclass(frozen=True)
class Usage:
    route: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost_usd: float


@dataclass(frozen=True)
class Price:
    usd_per_million_input: float = 0.0
    usd_per_million_output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        spent = prompt_tokens * self.usd_per_million_input + completion_tokens * self.usd_per_million_output
        return spent / 1e6


class Router:
    def __init__(
        self,
        name: str,
        providers: list[tuple[Provider, Price]],
        *,
        rounds: int = 2,
        max_wait_seconds: float = 30.0,
        on_usage: Callable[[Usage], None] | None = None,
        refuse: Callable[[], str | Awaitable[str | None] | None] | None = None,
    ) -> None:
        self.name = name
        self.providers = providers
        self.rounds = rounds
        self.max_wait_seconds = max_wait_seconds
        self.on_usage = on_usage or (lambda usage: None)
        self.refuse = refuse or (lambda: None)  # may be async: it may ask the store

    @property
    def primary(self) -> Provider:
        return self.providers[0][0]

    async def start(self) -> None:
        await self.primary.start()

    async def close(self) -> None:
        for provider, _ in self.providers:
            await provider.close()

    def describe(self) -> dict[str, Any]:
        return {**self.primary.describe(), "route": [p.name for p, _ in self.providers]}

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        reason = self.refuse()
        if inspect.isawaitable(reason):
            reason = await reason
        if reason:
            raise ProviderError(reason)
        failures: list[str] = []
        for round_number in range(self.rounds):
            waits: list[float] = []
            for provider, price in self.providers:
                started = time.perf_counter()
                answered = False
                try:
                    async for chunk in provider.stream(request):
                        answered = True
                        if chunk.usage:
                            self._record(provider, price, chunk.usage, started)
                        yield chunk
                    return
                except ProviderError as exc:
                    if answered or not exc.retryable:
                        raise
                    failures.append(str(exc))
                    log.warning(
                        "model unavailable, failing over", extra={"route": self.name, "error": str(exc)}
                    )
                    if exc.retry_after is not None:
                        waits.append(exc.retry_after)
            if round_number + 1 < self.rounds:
                # Every model failed: wait as long as they asked (within reason), or back off.
                delay = min(min(waits) if waits else 0.5 * 2**round_number, self.max_wait_seconds)
                await asyncio.sleep(delay)
        raise ProviderError(
            f"every model of route '{self.name}' failed ({'; '.join(failures)}). "
            "fix: check the models' servers, or add fallbacks to the agent"
        )

    def _record(self, provider: Provider, price: Price, usage: dict[str, int], started: float) -> None:
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        self.on_usage(
            Usage(
                route=self.name,
                model=provider.name,
                prompt_tokens=prompt,
                completion_tokens=completion,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                cost_usd=price.cost(prompt, completion),
            )
        )
