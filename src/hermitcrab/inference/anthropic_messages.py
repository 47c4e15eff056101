"""Anthropic's Messages API through the official SDK, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hermitcrab.config.schema import AnthropicModel
from hermitcrab.errors import ProviderError, ProviderUnavailable
from hermitcrab.inference.base import ChatMessage, ChatRequest, Chunk, api_key


def to_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """System text apart, and turns that alternate user/assistant (merging repeats)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    return system, turns


class AnthropicProvider:
    def __init__(self, name: str, config: AnthropicModel) -> None:
        self.name = name
        self.config = config
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {"provider": "anthropic", "base_url": self.config.base_url, "model": self.config.model}

    async def start(self) -> None:
        from anthropic import AsyncAnthropic

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
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        finish: str | None = None
        try:
            events = await self._client.messages.create(**arguments)
            async for event in events:
                if event.type == "message_start":
                    usage["prompt_tokens"] = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield Chunk(event.delta.text)
                elif event.type == "message_delta":
                    usage["completion_tokens"] = event.usage.output_tokens
                    finish = "length" if event.delta.stop_reason == "max_tokens" else "stop"
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
