"""The provider seam: a provider turns a chat request into a stream of text chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | user | assistant
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatRequest:
    messages: list[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None


@dataclass(frozen=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    usage: dict[str, int] = field(default_factory=dict)


class Provider(Protocol):
    """One model. `stream` yields text chunks; the last chunk carries finish_reason and usage."""

    name: str

    async def start(self) -> None:
        """Load or connect; may take long, and is awaited before the first request runs."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """A short, secret-free summary for `status` and /v1/models."""
        ...


async def complete(provider: Provider, request: ChatRequest) -> Completion:
    """Run a request to the end and collect the text."""
    parts: list[str] = []
    finish: str | None = None
    usage: dict[str, int] = {}
    async for chunk in provider.stream(request):
        parts.append(chunk.text)
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
    return Completion("".join(parts), finish, usage)


def api_key(model: str, env: str) -> str:
    """A remote model's key, from the gateway's environment; a missing one says how to fix it."""
    import os

    from hermitcrab.errors import ProviderError

    key = os.environ.get(env, "")
    if not key:
        raise ProviderError(
            f"model '{model}': environment variable {env} is empty. "
            f"fix: export {env}=... before `hermitcrab up`"
        )
    return key
