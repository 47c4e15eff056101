"""The Anthropic provider, through the official SDK, against a loopback server that speaks
the Messages API's wire protocol (the real service cannot be reached from here)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from hermitcrab.config.schema import AnthropicModel
from hermitcrab.errors import ProviderUnavailable
from hermitcrab.inference import (
    ChatMessage,
    ChatRequest,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    complete,
)
from hermitcrab.inference.anthropic_messages import AnthropicProvider, to_messages

EVENTS = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 21, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": " there."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 3}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip


# A reply that says a line, then calls a tool, its input streamed in JSON fragments.
TOOL_EVENTS = [
    EVENTS[0],
    EVENTS[1],
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Writing it."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01", "name": "write_file", "input": {}}}),
    *[("content_block_delta", {"type": "content_block_delta", "index": 1,
                               "delta": {"type": "input_json_delta", "partial_json": fragment}})
      for fragment in ["", '{"path": "no', 'tes.txt", "con', 'tent": "crab"}']],
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 17}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip


class Messages(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[dict, dict]]] = []
    overloaded = False
    events: ClassVar[list[tuple[str, dict]]] = EVENTS

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Messages.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if Messages.overloaded:
            payload = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
            self.send_response(429)
            self.send_header("retry-after", "2")
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for name, data in Messages.events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    Messages.seen = []
    Messages.overloaded = False
    Messages.events = EVENTS
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Messages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def provider(url: str) -> AnthropicProvider:
    config = AnthropicModel(
        provider="anthropic", model="claude-test", base_url=url, api_key_env="TEST_ANTHROPIC_KEY"
    )
    return AnthropicProvider("claude", config)


REQUEST = ChatRequest(
    [
        ChatMessage.of("system", "Be brief."),
        ChatMessage.of("user", "Hi"),
        ChatMessage.of("user", "Still there?"),
    ]
)


def test_streams_text_and_usage(server: str) -> None:
    result = asyncio.run(complete(provider(server), REQUEST))
    assert result.text == "Hello there."
    assert result.usage == {"prompt_tokens": 21, "completion_tokens": 3} and result.finish_reason == "stop"
    headers, body = Messages.seen[0]
    # The SDK's versions differ in how they send the key; either way it must be there.
    bearer = headers.get("authorization", "").removeprefix("Bearer ")
    assert "sk-ant-test" in (headers.get("x-api-key"), bearer)
    assert "anthropic-version" in headers
    assert body["system"] == "Be brief." and body["stream"] is True and body["model"] == "claude-test"
    assert body["temperature"] == 0.2
    # Two user messages in a row become one turn of two text blocks: turns must alternate.
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Still there?"}],
        }
    ]


def test_rate_limit_is_a_failover_with_retry_after(server: str) -> None:
    Messages.overloaded = True
    with pytest.raises(ProviderUnavailable) as caught:
        asyncio.run(complete(provider(server), REQUEST))
    assert caught.value.retry_after == 2.0 and "HTTP 429" in str(caught.value)


def test_turns_alternate() -> None:
    system, turns = to_messages(
        [ChatMessage.of("assistant", "a"), ChatMessage.of("assistant", "b"), ChatMessage.of("user", "c")]
    )
    assert system == "" and turns == [
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "c"}]},
    ]


WRITE = ToolSpec(
    "write_file",
    "Write a file.",
    {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
)


def test_a_streamed_tool_use_comes_back_as_a_call_part(server: str) -> None:
    Messages.events = TOOL_EVENTS
    request = ChatRequest([ChatMessage.of("user", "Write crab")], tools=(WRITE,), tool_choice="write_file")
    result = asyncio.run(complete(provider(server), request))
    call = ToolCallPart("toolu_01", "write_file", '{"path": "notes.txt", "content": "crab"}')
    assert result.tool_calls == [call]  # the input_json_delta fragments, joined
    assert result.text == "Writing it." and result.finish_reason == "tool_calls"
    assert result.usage == {"prompt_tokens": 21, "completion_tokens": 17}
    _, body = Messages.seen[0]
    assert body["tools"] == [
        {"name": "write_file", "description": "Write a file.", "input_schema": WRITE.parameters}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "write_file"}


def test_tool_results_go_back_as_tool_result_blocks_in_a_user_turn(server: str) -> None:
    call = ToolCallPart("toolu_01", "write_file", '{"path": "notes.txt", "content": "crab"}')
    history = [
        ChatMessage.of("user", "Write crab"),
        ChatMessage("assistant", (TextPart("Writing it."), call)),
        ChatMessage("tool", (ToolResultPart("toolu_01", "disk full", error=True, name="write_file"),)),
    ]
    result = asyncio.run(complete(provider(server), ChatRequest(history, tools=(WRITE,))))
    assert result.text == "Hello there."
    _, body = Messages.seen[0]
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Writing it."},
            {"type": "tool_use", "id": "toolu_01", "name": "write_file",
             "input": {"path": "notes.txt", "content": "crab"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "disk full", "is_error": True},
        ]},
    ]  # fmt: skip
    assert "tool_choice" not in body  # auto is Anthropic's default: not sent
