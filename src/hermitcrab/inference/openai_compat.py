"""Any OpenAI-compatible server (vLLM, Ollama, llama-server, NIM, OpenAI) via the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hermitcrab.config.schema import OpenAIModel
from hermitcrab.errors import ProviderError, ProviderUnavailable
from hermitcrab.inference.base import ChatRequest, Chunk, api_key
from hermitcrab.inference.openai_wire import choice_to_wire, deltas_from_wire, to_wire, tools_to_wire


class OpenAICompatProvider:
    def __init__(self, name: str, config: OpenAIModel) -> None:
        self.name = name
        self.config = config
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {"provider": "openai", "base_url": self.config.base_url, "model": self.config.model}

    async def start(self) -> None:
        from openai import AsyncOpenAI

        key = api_key(self.name, self.config.api_key_env) if self.config.api_key_env else "not-needed"
        self._client = AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=key,
            timeout=self.config.request_timeout_seconds,
            max_retries=0,  # the router retries and fails over; the SDK must not hide a 429
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        import openai

        if self._client is None:
            await self.start()
        try:
            extra: dict[str, Any] = {}
            if request.tools:
                extra["tools"] = tools_to_wire(request.tools)
                if request.tool_choice is not None:
                    extra["tool_choice"] = choice_to_wire(request.tool_choice)
            response = await self._client.chat.completions.create(
                model=self.config.model,
                messages=to_wire(request.messages),
                max_tokens=request.max_tokens or self.config.max_tokens,
                temperature=self.config.temperature if request.temperature is None else request.temperature,
                stop=request.stop,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            )
            finish: str | None = None
            async for event in response:
                if event.usage is not None:
                    usage = {
                        "prompt_tokens": event.usage.prompt_tokens,
                        "completion_tokens": event.usage.completion_tokens,
                    }
                    yield Chunk("", finish_reason=finish, usage=usage)
                for choice in event.choices:
                    finish = choice.finish_reason or finish
                    text = choice.delta.content or ""
                    calls = deltas_from_wire(choice.delta.tool_calls)
                    if text or calls or choice.finish_reason:
                        yield Chunk(text, finish_reason=choice.finish_reason, tool_calls=calls)
        except (openai.RateLimitError, openai.InternalServerError) as exc:
            raise ProviderUnavailable(
                f"model '{self.name}' at {self.config.base_url}: HTTP {exc.status_code}",
                retry_after=_retry_after(exc.response.headers.get("retry-after")),
            ) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ProviderUnavailable(f"model '{self.name}' at {self.config.base_url}: {exc}") from exc
        except openai.OpenAIError as exc:
            raise ProviderError(f"model '{self.name}' at {self.config.base_url}: {exc}") from exc


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: rare from model servers; treat as no hint
