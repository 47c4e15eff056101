"""OpenTelemetry traces of turns, when an OTLP endpoint is configured (`telemetry:`).

The spans are built here from the events the session log commits (turn.started,
model.response, tool.call, tool.result, reply, turn.failed), with the times those events
carry: the agent loop, the tools and the model router know nothing of tracing, and a
gateway without an endpoint imports nothing of OpenTelemetry. Names and attributes follow
OpenTelemetry's GenAI conventions: a turn is `invoke_agent NAME`, with `chat MODEL` and
`execute_tool NAME` spans under it. No message text and no tool argument is sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hermitcrab.errors import GatewayError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from hermitcrab.config.schema import TelemetryConfig

log = logging.getLogger("hermitcrab.gateway")

OPEN_TURNS_MAX = 10_000  # turns whose end never came (a crash) are let go beyond this


@dataclass
class _Turn:
    span: Span
    context: Context
    mark: int  # when the next model call began: the turn's start, or the last tool's result
    model: str | None = None
    calls: dict[str, tuple[str, int]] = field(default_factory=dict)  # call id -> (tool, start)


def _ns(event: dict[str, Any]) -> int:
    return int(float(event["created_at"]) * 1e9)


class Traces:
    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("hermitcrab")
        self._turns: dict[str, _Turn] = {}
        self._failed = False

    @classmethod
    def from_config(cls, config: TelemetryConfig) -> Traces | None:
        if config.otlp_endpoint is None:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise GatewayError(
                "telemetry.otlp_endpoint is set, but OpenTelemetry is not installed. "
                "fix: pip install 'hermitcrab[otel]', or remove telemetry.otlp_endpoint"
            ) from None
        endpoint = config.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("traces go to %s", endpoint)
        return cls(provider)

    def event(self, event: dict[str, Any]) -> None:
        """Take one committed event; a fault here loses a span, never the event."""
        try:
            self._event(event)
        except Exception:
            if not self._failed:
                log.exception("tracing failed on a %s event; later faults are not logged", event.get("kind"))
            self._failed = True

    def _event(self, event: dict[str, Any]) -> None:
        kind, session = event["kind"], event["session_id"]
        data = event.get("data") or {}
        if kind == "turn.started":
            self._start(session, event, str(data.get("agent", "?")))
            return
        turn = self._turns.get(session)
        if turn is None:
            return
        if kind == "model.response":
            self._model_call(turn, event, data)
        elif kind == "tool.call":
            turn.calls[str(data.get("call_id"))] = (str(data.get("name", "?")), _ns(event))
        elif kind == "tool.result":
            self._tool_call(turn, event, data)
        elif kind in ("reply", "turn.failed"):
            self._end(session, event, failed=kind == "turn.failed", why=str(data.get("error", "")))

    def _start(self, session: str, event: dict[str, Any], agent: str) -> None:
        from opentelemetry import trace

        if session in self._turns:  # its end never came: the gateway was killed mid-turn
            self._end(session, event, failed=True, why="interrupted; resumed as a new turn")
        if len(self._turns) >= OPEN_TURNS_MAX:
            self._end(next(iter(self._turns)), event, failed=True, why="never finished")
        start = _ns(event)
        span = self._tracer.start_span(
            f"invoke_agent {agent}",
            start_time=start,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": session,
                "hermitcrab.message_id": int(event.get("reply_to") or 0),
            },
        )
        self._turns[session] = _Turn(span, trace.set_span_in_context(span), start)

    def _model_call(self, turn: _Turn, event: dict[str, Any], data: dict[str, Any]) -> None:
        model = str(data.get("model", "?"))
        usage = data.get("usage") or {}
        span = self._tracer.start_span(
            f"chat {model}",
            context=turn.context,
            start_time=turn.mark,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": int(usage.get("prompt_tokens", 0)),
                "gen_ai.usage.output_tokens": int(usage.get("completion_tokens", 0)),
                "gen_ai.response.finish_reasons": [str(data.get("finish_reason", ""))],
            },
        )
        span.end(end_time=_ns(event))
        turn.mark = _ns(event)
        turn.model = model

    def _tool_call(self, turn: _Turn, event: dict[str, Any], data: dict[str, Any]) -> None:
        from opentelemetry.trace import Status, StatusCode

        call_id = str(data.get("call_id"))
        name, start = turn.calls.pop(call_id, (str(data.get("name", "?")), turn.mark))
        span = self._tracer.start_span(
            f"execute_tool {name}",
            context=turn.context,
            start_time=start,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
                "hermitcrab.tainted": bool(data.get("taint")),
            },
        )
        if data.get("error"):
            span.set_status(Status(StatusCode.ERROR, "the tool returned an error"))
        span.end(end_time=_ns(event))
        turn.mark = _ns(event)

    def _end(self, session: str, event: dict[str, Any], failed: bool, why: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        turn = self._turns.pop(session)
        if turn.model is not None:
            turn.span.set_attribute("gen_ai.request.model", turn.model)
        if failed:
            turn.span.set_status(Status(StatusCode.ERROR, why[:200]))
        turn.span.end(end_time=max(_ns(event), turn.mark))

    def shutdown(self) -> None:
        """Send what is buffered (the exporter's own timeouts bound the wait)."""
        self._provider.shutdown()
