"""The provider seam, and the one data model of a conversation.

A message is a list of typed parts: text, a tool call (id, name, JSON arguments) and a
tool result (call id, content, error flag). The same parts travel from each provider's
wire format through the store, the session API and the OpenAI-compatible API; no layer
flattens them to strings. A provider streams chunks: text deltas and tool-call deltas.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class TextPart:
    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (it may not parse: the loop checks)
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True)
class ToolResultPart:
    call_id: str
    content: str
    error: bool = False
    name: str = ""  # the tool's name: Anthropic and some templates want it beside the id
    kind: Literal["tool_result"] = "tool_result"


Part = TextPart | ToolCallPart | ToolResultPart
Role = Literal["system", "user", "assistant", "tool"]


def part_to_json(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"kind": "text", "text": part.text}
    if isinstance(part, ToolCallPart):
        return {"kind": "tool_call", "id": part.id, "name": part.name, "arguments": part.arguments}
    return {
        "kind": "tool_result",
        "call_id": part.call_id,
        "name": part.name,
        "content": part.content,
        "error": part.error,
    }


def part_from_json(data: dict[str, Any]) -> Part:
    kind = data.get("kind")
    if kind == "text":
        return TextPart(str(data["text"]))
    if kind == "tool_call":
        arguments = data["arguments"]
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return ToolCallPart(str(data["id"]), str(data["name"]), arguments)
    if kind == "tool_result":
        return ToolResultPart(
            str(data["call_id"]),
            str(data["content"]),
            bool(data.get("error", False)),
            str(data.get("name", "")),
        )
    raise ValueError(f"unknown part kind {kind!r}: expected text, tool_call or tool_result")


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    parts: tuple[Part, ...]

    @classmethod
    def of(cls, role: Role, text: str) -> ChatMessage:
        return cls(role, (TextPart(text),))

    @property
    def content(self) -> str:
        """The text parts, joined: what a model without tool support sees of the message."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if isinstance(p, ToolCallPart)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        return [p for p in self.parts if isinstance(p, ToolResultPart)]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model is offered it: a name, one line, a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


# "auto": the model chooses; "none": text only; "required": some tool; else a tool's name.
ToolChoice = str


@dataclass(frozen=True)
class ChatRequest:
    messages: list[ChatMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None  # None: "auto" when tools are offered


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: `index` says which call of the response;
    the id and name come once, the arguments in fragments to be joined."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: list[ToolCallPart] = field(default_factory=list)

    @property
    def parts(self) -> tuple[Part, ...]:
        text: tuple[Part, ...] = (TextPart(self.text),) if self.text else ()
        return text + tuple(self.tool_calls)


class CallAssembler:
    """Joins streamed tool-call deltas into whole calls, in the order they began."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.setdefault(delta.index, {"id": None, "name": "", "arguments": []})
        if delta.id:
            call["id"] = delta.id
        if delta.name:
            call["name"] += delta.name
        call["arguments"].append(delta.arguments)

    def calls(self, id_prefix: str = "call") -> list[ToolCallPart]:
        return [
            ToolCallPart(c["id"] or f"{id_prefix}_{index}", c["name"], "".join(c["arguments"]))
            for index, c in sorted(self._calls.items())
        ]


class Provider(Protocol):
    """One model. `stream` yields chunks; the last chunk carries finish_reason and usage."""

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
    """Run a request to the end and collect the text and the tool calls."""
    parts: list[str] = []
    finish: str | None = None
    usage: dict[str, int] = {}
    calls = CallAssembler()
    async for chunk in provider.stream(request):
        parts.append(chunk.text)
        for delta in chunk.tool_calls:
            calls.add(delta)
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
    return Completion("".join(parts), finish, usage, calls.calls())


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
