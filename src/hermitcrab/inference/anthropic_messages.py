"""Anthropic's Messages API through the official SDK, streamed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from hermitcrab.config.schema import AnthropicModel
from hermitcrab.errors import ProviderError, ProviderUnavailable
from hermitcrab.inference.base import (
    ChatMessage,
    ChatRequest,
    Chunk,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    api_key,
)


def to_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """System text apart, and turns that alternate user/assistant (merging repeats).
    Tool calls are `tool_use` blocks; their results go back in a user turn as `tool_result`."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        for part in m.parts:
            if isinstance(part, TextPart) and part.text:
                blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, ToolCallPart):
                blocks.append({"type": "tool_use", "id": part.id, "name": part.name, "input": _input(part)})
            elif isinstance(part, ToolResultPart):
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": part.call_id,
                        "content": part.content,
                        "is_error": part.error,
                    }
                )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _input(call: ToolCallPart) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_choice(choice: str | None) -> dict[str, str] | None:
    if choice is None or choice == "auto":
        return None
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


_FINISH = {"max_tokens": "length", "tool_use": "tool_calls"}


class AnthropicProvider:
    def __init__(self, name: str, config: AnthropicModel) -> None:
        self.name = name
        self.config = config
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {"provider": "anthropic", "base_url": self.config.base_url, "model": self.config.model}

    async def start(self) -> None:
        try:
            from anthropic import AsyncAnthropic
        except ImportError:
            raise ProviderError(
                f"model '{self.name}' uses Anthropic's API, and its SDK is not installed. "
                "fix: .venv/bin/pip install 'hermitcrab[anthropic]' (or `make up EXTRAS=anthropic`)"
            ) from None

        key = api_key(self.name, self.config.api_key_env)
        self._client = AsyncAnthropic(
            api_key=key,
            base_url=self.config.base_url,
            timeout=self.config.request_timeout_seconds,
            max_retries=0,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        import anthropic

        if self._client is None:
            await self.start()
        system, turns = to_messages(request.messages)
        arguments: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "messages": turns,
            "stream": True,
        }
        # Current SDKs dropped the sampling knobs from create(); servers that take them still
        # read them from the body.
        temperature = self.config.temperature if request.temperature is None else request.temperature
        arguments["extra_body"] = {"temperature": temperature}
        if system:
            arguments["system"] = system
        if request.stop:
            arguments["stop_sequences"] = request.stop
        if request.tools:
            arguments["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
            if (choice := _tool_choice(request.tool_choice)) is not None:
                arguments["tool_choice"] = choice
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        finish: str | None = None
        try:
            events = await self._client.messages.create(**arguments)
            async for event in events:
                if event.type == "message_start":
                    usage["prompt_tokens"] = event.message.usage.input_tokens
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    yield Chunk(tool_calls=(ToolCallDelta(event.index, block.id, block.name),))
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield Chunk(event.delta.text)
                elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    yield Chunk(tool_calls=(ToolCallDelta(event.index, arguments=event.delta.partial_json),))
                elif event.type == "message_delta":
                    usage["completion_tokens"] = event.usage.output_tokens
                    finish = _FINISH.get(event.delta.stop_reason or "", "stop")
        except (anthropic.RateLimitError, anthropic.InternalServerError) as exc:
            retry = exc.response.headers.get("retry-after")
            raise ProviderUnavailable(
                f"model '{self.name}' at {self.config.base_url}: HTTP {exc.status_code}",
                retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
            ) from exc
        except (anthropic.APIConnectionError, anthropic.APITimeoutError) as exc:
            raise ProviderUnavailable(f"model '{self.name}' at {self.config.base_url}: {exc}") from exc
        except anthropic.AnthropicError as exc:
            raise ProviderError(f"model '{self.name}' at {self.config.base_url}: {exc}") from exc
        yield Chunk("", finish_reason=finish or "stop", usage=usage)
