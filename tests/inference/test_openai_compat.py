"""The OpenAI-compatible provider against real OpenAI-compatible servers on loopback: our
own gateway's /v1 (itself answered by a scripted model), and a scripted model server that
streams tool calls as OpenAI does."""

from __future__ import annotations

import asyncio

import pytest

from hermitcrab.config.schema import OpenAIModel
from hermitcrab.errors import ProviderError
from hermitcrab.inference import (
    ChatMessage,
    ChatRequest,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    complete,
)
from hermitcrab.inference.openai_compat import OpenAICompatProvider
from hermitcrab.inference.scripted import ScriptedProvider
from tests.conftest import free_port
from tests.inference.model_server import ModelServer, model_servers

QUESTION = ChatRequest([ChatMessage.of("user", "Capital of Italy?")])


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


WRITE = ToolSpec(
    "write_file",
    "Write a file.",
    {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
)


def loopback(server: ModelServer) -> OpenAICompatProvider:
    return OpenAICompatProvider("remote", OpenAIModel(provider="openai", base_url=server.base_url, model="m"))


def test_a_streamed_tool_call_comes_back_as_a_call_part() -> None:
    arguments = '{"path": "notes.txt", "content": "crab"}'
    with model_servers([("tools", [("write_file", arguments)], "Writing it.")]) as (server,):
        request = ChatRequest(
            [ChatMessage.of("user", "Write crab")], tools=(WRITE,), tool_choice="write_file"
        )
        result = asyncio.run(complete(loopback(server), request))
    # The server sent the arguments in seven-character fragments; they come back whole.
    assert result.tool_calls == [ToolCallPart("call_0_write_file", "write_file", arguments)]
    assert result.text == "Writing it." and result.finish_reason == "tool_calls"
    assert result.parts == (TextPart("Writing it."), result.tool_calls[0])
    body = server.seen[0]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "write_file",
                "description": "Write a file.",
                "parameters": WRITE.parameters,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "write_file"}}


def test_two_calls_in_one_response_stay_apart() -> None:
    calls = [("read_file", '{"path": "a.txt"}'), ("read_file", '{"path": "b.txt"}')]
    with model_servers([("tools", calls)]) as (server,):
        request = ChatRequest([ChatMessage.of("user", "Read both")], tools=(WRITE,), tool_choice="required")
        result = asyncio.run(complete(loopback(server), request))
    assert [(c.id, c.arguments) for c in result.tool_calls] == [
        ("call_0_read_file", '{"path": "a.txt"}'),
        ("call_1_read_file", '{"path": "b.txt"}'),
    ]
    assert result.text == "" and server.seen[0]["tool_choice"] == "required"


def test_a_follow_up_sends_the_calls_and_their_results_in_openai_form() -> None:
    write = ToolCallPart("call_7", "write_file", '{"path": "notes.txt", "content": "crab"}')
    read = ToolCallPart("call_8", "read_file", '{"path": "gone.txt"}')
    history = [
        ChatMessage.of("user", "Write crab"),
        ChatMessage("assistant", (TextPart("On it."), write, read)),
        ChatMessage(
            "tool",
            (ToolResultPart("call_7", "wrote 4 bytes", name="write_file"),
             ToolResultPart("call_8", "no such file", error=True, name="read_file")),
        ),
    ]  # fmt: skip
    with model_servers([("ok", "Done.")]) as (server,):
        result = asyncio.run(complete(loopback(server), ChatRequest(history, tools=(WRITE,))))
    assert result.text == "Done." and result.finish_reason == "stop"
    body = server.seen[0]
    wire = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in (write, read)]  # fmt: skip
    assert body["messages"][1:] == [
        {"role": "assistant", "content": "On it.", "tool_calls": wire},
        {"role": "tool", "tool_call_id": "call_7", "content": "wrote 4 bytes"},
        # OpenAI has no error flag on a tool result: the error travels in the content.
        {"role": "tool", "tool_call_id": "call_8", "content": "error: no such file"},
    ]
    assert "tool_choice" not in body  # None: the server's default, which is auto
