"""A real OpenAI-compatible server on loopback that answers as it is told, request by
request: 429 (with Retry-After), 500, slow, a streamed completion, or streamed tool calls."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ModelServer:
    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        # ("429", retry_after) | ("500",) | ("slow", seconds) | ("ok", text)
        # | ("tools", [(name, arguments_json), ...]) | ("tools", [...], text said first)
        self.script = list(script)
        self.seen: list[dict[str, Any]] = []
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.http.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.seen.append(body)
                step = server.script[min(len(server.seen), len(server.script)) - 1]
                if step[0] == "slow":
                    time.sleep(step[1])
                    step = ("ok", "too late")
                if step[0] in ("429", "500"):
                    error = json.dumps({"error": {"message": "scripted", "type": "server_error"}}).encode()
                    self.send_response(int(step[0]))
                    if step[0] == "429":
                        self.send_header("Retry-After", str(step[1]))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # no length: the stream ends when we close
                self.close_connection = True
                calls = step[1] if step[0] == "tools" else []
                text = step[1] if step[0] != "tools" else (step[2] if len(step) > 2 else "")
                words = text.split(" ") if text else []
                for index, word in enumerate(words):
                    self._delta({"content": word if index == 0 else " " + word})
                for index, (name, arguments) in enumerate(calls):
                    self._call(index, name, arguments)
                finish = "tool_calls" if calls else "stop"
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                usage = {"prompt_tokens": 5, "completion_tokens": len(words) + len(calls)}
                self._event({"choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")

            def _call(self, index: int, name: str, arguments: str) -> None:
                """A tool call as OpenAI streams it: id, type and name first with empty
                arguments, then the arguments in fragments that carry only the index."""
                head = {"index": index, "id": f"call_{index}_{name}", "type": "function",
                        "function": {"name": name, "arguments": ""}}  # fmt: skip
                self._delta({"role": "assistant", "content": None, "tool_calls": [head]})
                for start in range(0, len(arguments), 7):
                    fragment = {"index": index, "function": {"arguments": arguments[start : start + 7]}}
                    self._delta({"tool_calls": [fragment]})

            def _delta(self, delta: dict[str, Any]) -> None:
                self._event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

            def _event(self, payload: dict[str, Any]) -> None:
                base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
                self.wfile.write(f"data: {json.dumps({**base, **payload})}\n\n".encode())

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@contextmanager
def model_servers(*scripts: list[tuple[Any, ...]]) -> Iterator[list[ModelServer]]:
    servers = [ModelServer(s) for s in scripts]
    for s in servers:
        threading.Thread(target=s.http.serve_forever, daemon=True).start()
    try:
        yield servers
    finally:
        for s in servers:
            s.http.shutdown()
            s.http.server_close()
