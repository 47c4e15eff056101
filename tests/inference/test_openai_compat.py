"""The OpenAI-compatible provider against a real OpenAI-compatible server on loopback
(our own gateway's /v1, itself answered by a scripted model)."""

from __future__ import annotations

import asyncio

import pytest

from hermitcrab.config.schema import OpenAIModel
from hermitcrab.errors import ProviderError
from hermitcrab.inference import ChatMessage, ChatRequest, complete
from hermitcrab.inference.openai_compat import OpenAICompatProvider
from hermitcrab.inference.scripted import ScriptedProvider
from tests.conftest import free_port

QUESTION = ChatRequest([ChatMessage("user", "Capital of Italy?")])


def test_streams_a_completion_from_the_server(live_gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = ScriptedProvider("embedded", ["Rome, of course."])
    gw = live_gateway({"embedded": upstream})
    monkeypatch.setenv("UPSTREAM_KEY", gw.token)
    provider = OpenAICompatProvider(
        "remote",
        OpenAIModel(provider="openai", base_url=f"{gw.url}/v1", model="main", api_key_env="UPSTREAM_KEY"),
    )
    result = asyncio.run(complete(provider, QUESTION))
    assert result.text == "Rome, of course."
    assert result.finish_reason == "stop"
    assert upstream.requests[0].messages[-1].content == "Capital of Italy?"


def test_wrong_key_is_a_provider_error(live_gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = live_gateway()
    monkeypatch.setenv("UPSTREAM_KEY", "wrong")
    provider = OpenAICompatProvider(
        "remote",
        OpenAIModel(provider="openai", base_url=f"{gw.url}/v1", model="main", api_key_env="UPSTREAM_KEY"),
    )
    with pytest.raises(ProviderError, match="401"):
        asyncio.run(complete(provider, QUESTION))


def test_unreachable_server_is_a_provider_error() -> None:
    config = OpenAIModel(
        provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", model="x", request_timeout_seconds=5
    )
    with pytest.raises(ProviderError, match="remote"):
        asyncio.run(complete(OpenAICompatProvider("remote", config), QUESTION))


def test_missing_key_variable_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    config = OpenAIModel(
        provider="openai", base_url="http://127.0.0.1:9/v1", model="x", api_key_env="NO_SUCH_KEY"
    )
    with pytest.raises(ProviderError, match="NO_SUCH_KEY is empty"):
        asyncio.run(OpenAICompatProvider("remote", config).start())
