"""OpenAI-compatible /v1 API: the model name selects the agent.

`model: NAME` is stateless, like OpenAI's own: the client sends the whole conversation,
and the agent's route answers it (the agent's persona is prepended when the client sends
no system message of its own).

`model: agent:NAME` runs a full turn of that agent instead (tools, approvals, memory) in a
durable session (`X-HermitCrab-Session`, else the `user` field, else `api`), from the last
user message: the session keeps the rest. The answer is the turn's final text.

A call from inside a sandbox (through http://inference.local, which the egress proxy
marks with the sandbox's name) takes that sandbox's agent's route whatever model it
names: a sandbox cannot spend another agent's budget or reach another agent's model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hermitcrab.egress import SANDBOX_HEADER
from hermitcrab.errors import HermitCrabError, SandboxNotFound
from hermitcrab.gateway.answers import answer_to
from hermitcrab.gateway.http import ApiError, check_text_size, read_json
from hermitcrab.gateway.service import Gateway
from hermitcrab.inference import ChatMessage, ChatRequest, ToolCallPart, complete
from hermitcrab.inference.queue import BACKGROUND, CALL_PARTY, CALL_PRIORITY, CALL_SESSION, INTERACTIVE
from hermitcrab.store.sessions import check_session_id

PRIORITY_HEADER = "X-HermitCrab-Priority"  # background: wait behind calls a person waits on
SESSION_HEADER = "X-HermitCrab-Session"  # the session an agent turn runs in
AGENT_PREFIX = "agent:"


def routes(gw: Gateway) -> list[Route]:
    async def sandbox_agent(request: Request) -> str | None:
        """The agent whose route a call from a sandbox takes; None for other callers."""
        sandbox = request.headers.get(SANDBOX_HEADER)
        if sandbox is None:
            return None
        try:
            agent = (await gw.sandbox_runtime()).get(sandbox).agent or gw.config.default_agent
        except SandboxNotFound:
            raise ApiError(403, "unknown_sandbox", f"no sandbox named '{sandbox}'") from None
        if agent not in gw.agents:
            raise ApiError(
                404,
                "model_not_found",
                f"sandbox '{sandbox}' works for agent '{agent}', which is no longer configured. "
                "fix: add it under agents: in hermitcrab.yaml, or recreate the sandbox with --agent",
            )
        return agent

    async def models(request: Request) -> JSONResponse:
        created = int(gw.started_at)
        own = await sandbox_agent(request)
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "hermitcrab"}
            for name in gw.agents
            if own is None or name == own
        ]
        if own is None:  # each agent's full turn, too: not for a sandbox
            data += [
                {
                    "id": f"{AGENT_PREFIX}{name}",
                    "object": "model",
                    "created": created,
                    "owned_by": "hermitcrab",
                }
                for name in gw.agents
            ]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request) -> Response:
        body = await read_json(request, gw.config.gateway.max_request_bytes)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request_error", "the body must be a JSON object")
        own = await sandbox_agent(request)
        model = body.get("model")
        if isinstance(model, str) and model.startswith(AGENT_PREFIX):
            if own is not None:  # a sandbox calls its agent's model route, never the agent itself
                raise ApiError(403, "permission_denied", "a sandbox cannot run an agent's turn")
            return await agent_turn(request, body, model.removeprefix(AGENT_PREFIX))
        name = own or model or gw.config.default_agent
        if name not in gw.agents:
            raise ApiError(
                404,
                "model_not_found",
                f"no agent named '{name}'. fix: use one of {', '.join(gw.agents)} (GET /v1/models)",
            )
        agent = gw.agents[name]
        # Who waits at the model's queue: fair turns go round these parties.
        user = body.get("user")
        party = f"sandbox:{request.headers[SANDBOX_HEADER]}" if own else f"api:{user}" if user else "api"
        CALL_PARTY.set(party)
        CALL_SESSION.set(party)
        background = request.headers.get(PRIORITY_HEADER, "").lower() == "background"
        CALL_PRIORITY.set(BACKGROUND if background else INTERACTIVE)
        messages = _messages(body.get("messages"), gw.config.gateway.max_message_bytes)
        if not any(m.role == "system" for m in messages):
            persona = agent.persona.system_prompt()
            if persona:
                messages.insert(0, ChatMessage.of("system", persona))
        from hermitcrab.inference.openai_wire import choice_from_wire, tools_from_wire

        try:  # the client's own tools: the model may call them; the client runs them
            tools, choice = tools_from_wire(body.get("tools")), choice_from_wire(body.get("tool_choice"))
        except ValueError as exc:
            raise ApiError(400, "invalid_request_error", str(exc)) from None
        chat = ChatRequest(
            messages,
            max_tokens=_optional_int(body, "max_tokens") or _optional_int(body, "max_completion_tokens"),
            temperature=_optional_float(body, "temperature"),
            stop=_stop(body.get("stop")),
            tools=tools,
            tool_choice=choice if tools else None,
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream"):
            return StreamingResponse(
                _sse(agent.provider.stream(chat), _Chunks(completion_id, created, name), _wants_usage(body)),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        try:
            result = await complete(agent.provider, chat)
        except HermitCrabError as exc:
            raise ApiError(502, "provider_error", str(exc)) from None
        usage = _totals(result.usage)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": name,
                "choices": [
                    {
                        "index": 0,
                        "message": _message(result.text, result.tool_calls),
                        "finish_reason": "tool_calls"
                        if result.tool_calls
                        else result.finish_reason or "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def agent_turn(request: Request, body: dict[str, Any], name: str) -> Response:
        if name not in gw.agents:
            raise ApiError(
                404,
                "model_not_found",
                f"no agent named '{name}'. fix: use agent:{' or agent:'.join(gw.agents)}",
            )
        session = request.headers.get(SESSION_HEADER) or body.get("user") or "api"
        if not isinstance(session, str):
            raise ApiError(400, "invalid_request_error", "'user' must be a string")
        try:
            check_session_id(session)
        except HermitCrabError as exc:
            raise ApiError(400, "invalid_request_error", str(exc)) from None
        assert gw.db is not None
        known = await gw.db.aio.sessions.get_session(session)
        if known is not None and known.agent != name:
            raise ApiError(
                409, "session_conflict", f"session '{session}' belongs to agent '{known.agent}', not '{name}'"
            )
        messages = _messages(body.get("messages"), gw.config.gateway.max_message_bytes)
        last = messages[-1] if messages else None
        if last is None or last.role != "user" or not last.content.strip():
            raise ApiError(
                400,
                "invalid_request_error",
                "an agent turn starts from the last message, which must be the user's "
                "(the session on the gateway keeps the conversation before it)",
            )
        max_tokens = _optional_int(body, "max_tokens") or _optional_int(body, "max_completion_tokens")
        options = {"max_tokens": max_tokens} if max_tokens else {}
        completion_id, created, model = (
            f"chatcmpl-{uuid.uuid4().hex}",
            int(time.time()),
            f"{AGENT_PREFIX}{name}",
        )
        held = contextlib.ExitStack()
        queue = held.enter_context(gw.hub.listen(session))  # before the message: no event is missed
        try:
            event = await gw.submit(session, last.content, name, source="openai", **options)
        except BaseException:
            held.close()
            raise
        if body.get("stream"):
            chunks = _Chunks(completion_id, created, model)
            turn = _stream_turn(gw, held, queue, session, event.id, chunks, _wants_usage(body))
            return StreamingResponse(
                turn, media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        with held:
            answer = await answer_to(gw, queue, session, event.id)
        if answer["kind"] != "reply":
            raise ApiError(
                502, "agent_error", f"the turn ended without a reply: {answer['data'].get('error')}"
            )
        usage = await _turn_usage(gw, session, event.id)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer["data"].get("text", "")},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    return [
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]


@dataclass(frozen=True)
class _Chunks:
    """One streamed completion's server-sent events, as OpenAI writes them."""

    completion_id: str
    created: int
    model: str

    def _event(self, **fields: Any) -> bytes:
        payload = {"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                   "model": self.model, **fields}  # fmt: skip
        return f"data: {json.dumps(payload)}\n\n".encode()

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._event(choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    def usage(self, usage: dict[str, Any]) -> bytes:
        """As OpenAI does: one last chunk with no choices and the usage."""
        return self._event(choices=[], usage=_totals(usage))

    @staticmethod
    def error(message: str, kind: str) -> bytes:
        """Headers are already sent: an error object in the stream is what OpenAI clients read."""
        return f"data: {json.dumps({'error': {'message': message, 'type': kind, 'code': 502}})}\n\n".encode()


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _totals(usage: dict[str, Any]) -> dict[str, int]:
    totals = {"prompt_tokens": 0, "completion_tokens": 0, **usage}
    totals["total_tokens"] = totals["prompt_tokens"] + totals["completion_tokens"]
    return totals


async def _sse(chunks: AsyncIterator[Any], frames: _Chunks, with_usage: bool = False) -> AsyncIterator[bytes]:
    frame = frames.delta
    yield frame({"role": "assistant", "content": ""}, None)
    finish: str | None = None
    usage: dict[str, int] = {}
    try:
        async for chunk in chunks:
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
            if chunk.text:
                yield frame({"content": chunk.text}, None)
            if chunk.tool_calls:
                from hermitcrab.inference.openai_wire import deltas_to_wire

                yield frame({"tool_calls": deltas_to_wire(chunk.tool_calls)}, None)
    except HermitCrabError as exc:
        yield frames.error(str(exc), "provider_error")
        return
    yield frame({}, finish or "stop")
    if with_usage:
        yield frames.usage(usage)
    yield b"data: [DONE]\n\n"


async def _turn_usage(gw: Gateway, session: str, message_id: int) -> dict[str, int]:
    """Tokens over every model call of the turn."""
    assert gw.db is not None
    totals = {"prompt_tokens": 0, "completion_tokens": 0}
    for stored in await gw.db.aio.sessions.events(session, message_id):
        if stored.reply_to == message_id and stored.kind == "model.response":
            for key, value in (stored.data.get("usage") or {}).items():
                if key in totals and isinstance(value, int):
                    totals[key] += value
    return _totals(totals)


async def _stream_turn(
    gw: Gateway,
    held: contextlib.ExitStack,
    queue: asyncio.Queue[Any],
    session: str,
    message_id: int,
    frames: _Chunks,
    with_usage: bool,
) -> AsyncIterator[bytes]:
    """An agent turn as OpenAI chunks: its text as the model writes it, a comment line for
    each tool call (what a client shows as "working"), then the final reply's rest."""
    frame = frames.delta

    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    waiting = asyncio.create_task(answer_to(gw, queue, session, message_id, seen.put))
    streamed = ""  # the text sent since the model's last call that asked for tools
    try:
        yield frame({"role": "assistant", "content": ""}, None)
        while not waiting.done() or not seen.empty():
            getting = asyncio.ensure_future(seen.get())
            await asyncio.wait({getting, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                continue
            event = getting.result()
            if event["kind"] == "token" and event["data"].get("text"):
                streamed += event["data"]["text"]
                yield frame({"content": event["data"]["text"]}, None)
            elif event["kind"] == "model.response" and any(
                part.get("kind") == "tool_call" for part in event["data"].get("parts", [])
            ):
                streamed = ""  # that text led to tool calls; the reply is a later call's
            elif event["kind"] == "tool.call":
                yield f": calling {event['data'].get('name')}\n\n".encode()
        answer = waiting.result()
        if answer["kind"] != "reply":
            yield frames.error(
                f"the turn ended without a reply: {answer['data'].get('error')}", "agent_error"
            )
            return
        text = str(answer["data"].get("text", ""))
        rest = text[len(streamed.strip()) :] if text.startswith(streamed.strip()) else ""
        if rest:
            yield frame({"content": rest}, None)
        yield frame({}, "stop")
        if with_usage:
            yield frames.usage(await _turn_usage(gw, session, message_id))
        yield b"data: [DONE]\n\n"
    finally:
        waiting.cancel()  # a client that left: the turn goes on, unwatched
        held.close()


def _messages(raw: Any, max_bytes: int) -> list[ChatMessage]:
    from hermitcrab.inference.openai_wire import from_wire

    try:
        messages = from_wire(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_request_error", str(exc)) from None
    for message in messages:
        check_text_size(message.content, max_bytes)
        for result in message.tool_results:
            check_text_size(result.content, max_bytes)
    return messages


def _message(text: str, calls: list[ToolCallPart]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    return message


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApiError(400, "invalid_request_error", f"'{key}' must be a positive whole number")
    return value


def _optional_float(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ApiError(400, "invalid_request_error", f"'{key}' must be a number")
    return float(value)


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ApiError(400, "invalid_request_error", "'stop' must be a string or a list of strings")
