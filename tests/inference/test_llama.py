"""The embedded model, for real: SmolLM2-135M through llama.cpp."""

from __future__ import annotations

import asyncio

import pytest

from hermitcrab.config.schema import LlamaCppModel
from hermitcrab.errors import ProviderError
from hermitcrab.inference import ChatMessage, ChatRequest, complete
from hermitcrab.inference.llama import LlamaCppProvider
from hermitcrab.inference.model_file import bundled_model_path

pytest.importorskip("llama_cpp")

SYSTEM = ChatMessage.of("system", "You are a helpful assistant. Answer in one short sentence.")


@pytest.fixture(scope="module")
def provider() -> LlamaCppProvider:
    return LlamaCppProvider("embedded", LlamaCppModel(max_tokens=32, temperature=0.0))


def run(coro):
    return asyncio.run(coro)


def test_bundled_model_is_found() -> None:
    path = bundled_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_real_completion(provider: LlamaCppProvider) -> None:
    request = ChatRequest([SYSTEM, ChatMessage.of("user", "What is the capital of France?")])
    result = run(complete(provider, request))
    assert result.text.strip()
    assert "paris" in result.text.lower()
    assert result.usage["completion_tokens"] > 0 and result.usage["prompt_tokens"] > 10


def test_follow_up_reuses_the_evaluated_prefix(provider: LlamaCppProvider) -> None:
    """A second turn must evaluate only what is new, not the whole conversation again."""

    async def two_turns() -> tuple[int, int, int]:
        first = [SYSTEM, ChatMessage.of("user", "Name a colour.")]
        answer = await complete(provider, ChatRequest(first))
        llm = provider._llm
        evaluated: list[int] = []
        original = llm.eval

        def counting_eval(tokens):  # llama-cpp-python evaluates only tokens past the cached prefix
            evaluated.append(len(tokens))
            return original(tokens)

        llm.eval = counting_eval
        try:
            second = [
                *first,
                ChatMessage.of("assistant", answer.text),
                ChatMessage.of("user", "Another one?"),
            ]
            result = await complete(provider, ChatRequest(second))
        finally:
            del llm.eval
        return evaluated[0], result.usage["prompt_tokens"], len(evaluated)

    prompt_evaluated, prompt_tokens, _ = run(two_turns())
    assert prompt_tokens > 40
    assert prompt_evaluated < prompt_tokens / 2, (prompt_evaluated, prompt_tokens)


def test_too_long_prompt_is_a_clear_error() -> None:
    small = LlamaCppProvider("tiny", LlamaCppModel(context_tokens=256, max_tokens=8))
    request = ChatRequest([ChatMessage.of("user", "word " * 2000)])
    with pytest.raises(ProviderError, match="context window"):
        run(complete(small, request))


def test_missing_model_file_is_a_clear_error(tmp_path) -> None:
    broken = LlamaCppProvider("gone", LlamaCppModel(path=str(tmp_path / "missing.gguf")))
    with pytest.raises(ProviderError, match="not found"):
        run(broken.start())
