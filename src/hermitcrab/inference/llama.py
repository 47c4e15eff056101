"""The embedded model: a GGUF file run in-process by llama.cpp, loaded once, streamed.

llama.cpp is not thread-safe and blocks, so generation runs on a worker thread, one
request at a time, and chunks cross into the event loop through a queue. Because one
`Llama` object lives for the whole daemon, llama.cpp's own prefix reuse applies: a
follow-up turn whose prompt extends the previous one evaluates only the new tokens.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from hermitcrab.config.schema import LlamaCppModel
from hermitcrab.errors import ProviderError
from hermitcrab.inference.base import ChatRequest, Chunk
from hermitcrab.inference.model_file import resolve_model_path


class LlamaCppProvider:
    def __init__(self, name: str, config: LlamaCppModel) -> None:
        self.name = name
        self.config = config
        self.load_seconds: float | None = None
        self._llm: Any = None
        self._path: str | None = None
        self._loading: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def describe(self) -> dict[str, Any]:
        return {
            "provider": "llama_cpp",
            "path": self._path or self.config.path or "bundled SmolLM2-135M-Instruct (Q4_1)",
            "loaded": self.loaded,
            "load_seconds": self.load_seconds,
            "context_tokens": self.config.context_tokens,
        }

    async def start(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        await asyncio.shield(self._loading)

    def _load(self) -> None:
        path = resolve_model_path(self.config.path)
        self._path = str(path)
        started = time.perf_counter()
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ProviderError(
                f"llama-cpp-python is not installed ({exc}). fix: pip install llama-cpp-python (or `make up`)"
            ) from None
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.config.context_tokens,
                n_threads=self.config.threads or os.cpu_count() or 1,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(f"llama.cpp could not load {path}: {exc}") from None
        self.load_seconds = time.perf_counter() - started

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            await asyncio.gather(self._loading, return_exceptions=True)
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.close)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        await self.start()
        async with self._lock:  # one generation at a time: the model has one context
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
            cancelled = threading.Event()

            def put(item: tuple[str, Any, Any]) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            def generate() -> None:
                try:
                    produced = 0
                    parts = self._llm.create_chat_completion(
                        messages=[m.to_dict() for m in request.messages],
                        max_tokens=request.max_tokens or self.config.max_tokens,
                        temperature=self.config.temperature
                        if request.temperature is None
                        else request.temperature,
                        stop=request.stop,
                        stream=True,
                    )
                    for part in parts:
                        if cancelled.is_set():
                            break
                        choice = part["choices"][0]
                        text = choice["delta"].get("content") or ""
                        produced += 1 if text else 0
                        put(("chunk", text, choice.get("finish_reason")))
                    # n_tokens counts what the context holds now: the prompt plus what was made.
                    prompt_tokens = max(int(self._llm.n_tokens) - produced, 0)
                    put(("done", {"prompt_tokens": prompt_tokens, "completion_tokens": produced}, None))
                except BaseException as exc:
                    put(("error", exc, None))

            worker = loop.run_in_executor(None, generate)
            try:
                finish: str | None = None
                while True:
                    kind, value, extra = await queue.get()
                    if kind == "chunk":
                        finish = extra or finish
                        if value:
                            yield Chunk(value)
                    elif kind == "done":
                        yield Chunk("", finish_reason=finish or "stop", usage=value)
                        return
                    else:
                        raise _provider_error(self.name, value)
            finally:
                cancelled.set()
                await asyncio.shield(worker)


def _provider_error(name: str, exc: BaseException) -> ProviderError:
    text = str(exc)
    if "context window" in text or "exceed context" in text:
        return ProviderError(
            f"model '{name}': the conversation is too long for its context window ({text}). "
            "fix: start a new session, send a shorter message, or raise context_tokens"
        )
    return ProviderError(f"model '{name}' failed: {type(exc).__name__}: {text}")
