"""OpenTelemetry traces: the real daemon sends a turn's spans over OTLP/HTTP to a receiver
on loopback that decodes them with OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.config.schema import TelemetryConfig
from hermitcrab.errors import GatewayError
from hermitcrab.gateway.tracing import Traces
from tests.cli.conftest import acting_config, hc

trace_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class Collector:
    """An OTLP/HTTP traces endpoint: keeps every span it is sent, and the raw bodies."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.bodies.append(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend((resource, span) for span in scope.spans)
                reply = trace_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.server.shutdown()


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_turn_with_a_tool_call_is_one_trace_of_spans(home: Paths, collector: Collector) -> None:
    config = acting_config("write_file", {"path": "secret-plan.txt", "content": "crab"}, "Done.")
    home.config.write_text(
        f"{config}\ntelemetry:\n  otlp_endpoint: {collector.url}\n  service_name: crab-test\n"
    )
    assert hc(home, "up").returncode == 0
    try:
        asked = hc(home, "ask", "Write the plan down")
        assert asked.returncode == 0, asked.stderr
    finally:
        assert hc(home, "down").returncode == 0  # shutting down sends what is buffered
    by_name = {span.name: (resource, span) for resource, span in collector.spans}
    assert set(by_name) == {"invoke_agent main", "chat embedded", "execute_tool write_file"}
    assert len(collector.spans) == 4  # two model calls: the one that acts, the one that answers
    resource, turn = by_name["invoke_agent main"]
    service = {kv.key: kv.value.string_value for kv in resource.resource.attributes}["service.name"]
    assert service == "crab-test"
    assert turn.parent_span_id == b"" and attributes(turn)["gen_ai.agent.name"] == "main"
    children = [span for _, span in collector.spans if span is not turn]
    assert all(s.trace_id == turn.trace_id and s.parent_span_id == turn.span_id for s in children)
    assert all(turn.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano for s in children)
    assert all(s.end_time_unix_nano <= turn.end_time_unix_nano for s in children)
    chats = sorted((s for s in children if s.name == "chat embedded"), key=lambda s: s.start_time_unix_nano)
    tool = by_name["execute_tool write_file"][1]
    assert chats[0].end_time_unix_nano <= tool.start_time_unix_nano
    assert tool.end_time_unix_nano <= chats[1].start_time_unix_nano
    assert attributes(tool)["gen_ai.tool.name"] == "write_file" and tool.status.code != 2  # not ERROR
    assert attributes(chats[0])["gen_ai.request.model"] == "embedded"
    # What was said and what the tool was given stay home: names and counts only.
    sent = b"".join(collector.bodies)
    assert b"secret-plan" not in sent and b"Write the plan" not in sent and b"Done." not in sent


def test_without_opentelemetry_an_endpoint_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(GatewayError, match=r"pip install 'hermitcrab\[otel\]'"):
        Traces.from_config(TelemetryConfig(otlp_endpoint="http://127.0.0.1:4318"))
    assert Traces.from_config(TelemetryConfig()) is None


def test_an_endpoint_that_is_not_a_url_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="not an http"):
        TelemetryConfig(otlp_endpoint="127.0.0.1:4318")
