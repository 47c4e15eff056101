"""The session API: post messages, read the event log, stream events over a WebSocket."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from hermitcrab import __version__
from hermitcrab.errors import HermitCrabError
from hermitcrab.gateway.http import ApiError, check_text_size, drain, read_json
from hermitcrab.gateway.logs import LAST_ERROR
from hermitcrab.gateway.service import Gateway
from hermitcrab.store.sessions import check_session_id

MAX_EVENTS_PAGE = 1000


def routes(gw: Gateway) -> list[Route | WebSocketRoute]:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "pid": os.getpid(), "version": __version__})

    async def status(request: Request) -> JSONResponse:
        info = gw.status()
        # At a glance: what runs next, what today cost, how many wait at each model.
        jobs = await gw.db.aio.jobs.all(live_only=True)
        upcoming = sorted((j for j in jobs if j.next_due is not None), key=lambda j: j.next_due or 0)[:5]
        info["jobs_next"] = [
            {"id": j.id, "name": j.name or j.kind, "agent": j.agent, "next_due": j.next_due} for j in upcoming
        ]
        info["jobs"] = len(jobs)
        info["sessions"] = await gw.db.aio.sessions.count()
        info["last_error"] = LAST_ERROR.last
        info["spend_today_usd"] = round(await gw.db.aio.usage.spent_today(), 6)
        info["queue"] = {name: q.queue.waiting() for name, q in gw.queued.items()}
        return JSONResponse(info)

    async def mcp_servers(request: Request) -> JSONResponse:
        return JSONResponse({"servers": gw.mcp.describe() if gw.mcp is not None else []})

    async def metrics(request: Request) -> Response:
        from hermitcrab.gateway.metrics import exposition

        body, content_type = exposition(gw)
        return Response(body, media_type=content_type)

    async def list_sessions(request: Request) -> JSONResponse:
        sessions = await gw.db.aio.sessions.list_sessions()
        return JSONResponse({"sessions": [s.to_json() for s in sessions]})

    async def post_message(request: Request) -> JSONResponse:
        session_id = _session_id(request)
        body = await read_json(request, gw.config.gateway.max_request_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            raise ApiError(400, "invalid_request", 'send a JSON object like {"text": "hello"}')
        check_text_size(body["text"], gw.config.gateway.max_message_bytes)
        agent = body.get("agent")
        if agent is not None and agent not in gw.agents:
            raise ApiError(404, "unknown_agent", f"no agent named '{agent}'; known: {', '.join(gw.agents)}")
        options = _turn_options(body)
        source_id = body.get("source_id")
        if source_id is not None and (not isinstance(source_id, str) or not 0 < len(source_id) <= 200):
            raise ApiError(400, "invalid_request", "'source_id' is a string of 1 to 200 characters")
        event = await gw.submit(
            session_id, body["text"], agent, str(body.get("source", "api")), source_id, **options
        )
        if event.duplicate:  # a retry of a message already taken: the first one's answer stands
            return JSONResponse(
                {"message_id": event.id, "session_id": event.session_id, "status": "duplicate"}
            )
        return JSONResponse(
            {"message_id": event.id, "session_id": event.session_id, "status": "queued"}, status_code=202
        )

    async def get_events(request: Request) -> JSONResponse:
        session_id = _session_id(request)
        if await gw.db.aio.sessions.get_session(session_id) is None:
            raise ApiError(404, "unknown_session", f"no session '{session_id}'")
        after = _int_param(request, "after", 0)
        limit = min(_int_param(request, "limit", MAX_EVENTS_PAGE), MAX_EVENTS_PAGE)
        events = await gw.db.aio.sessions.events(session_id, after, limit)
        return JSONResponse({"session_id": session_id, "events": [e.to_json() for e in events]})

    async def stream_events(ws: WebSocket) -> None:
        session_id = ws.path_params["session_id"]
        try:
            check_session_id(session_id)
            # With ?after=N, replay the log after event N first; without it, live events only.
            raw_after = ws.query_params.get("after")
            after = int(raw_after) if raw_after is not None else None
        except (HermitCrabError, ValueError):
            await ws.close(code=4400, reason="bad session id or 'after'")
            return
        # Listen before accepting (a client may send its message as soon as it is accepted)
        # and before replaying (an event committed meanwhile arrives twice, never zero times).
        with gw.hub.listen(session_id) as queue:
            await ws.accept()
            last = 0  # the newest event already sent: a live copy of it is skipped
            if after is not None:
                last = after
                for event in await gw.db.aio.sessions.events(session_id, after, MAX_EVENTS_PAGE):
                    await ws.send_json(event.to_json())
                    last = event.id
            receiver = asyncio.create_task(drain(ws))
            try:
                while True:
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if receiver in done:
                        getter.cancel()
                        return
                    event = getter.result()
                    if event is None:
                        await ws.close(code=4408, reason="too slow; reconnect with ?after=")
                        return
                    if event["id"] is not None:
                        if event["id"] <= last:
                            continue
                        last = event["id"]
                    await ws.send_json(event)
            except WebSocketDisconnect:
                return
            finally:
                receiver.cancel()

    async def usage(request: Request) -> JSONResponse:
        by = request.query_params.get("by", "day")
        if by not in ("day", "agent", "session", "model"):
            raise ApiError(400, "invalid_request", "'by' must be day, agent, session or model")
        assert gw.db is not None
        rows = await gw.db.aio.usage.summary(by, request.query_params.get("since"))
        caps = {name: a.config.spend_cap_usd_per_day for name, a in gw.agents.items()}
        spent = {name: await gw.db.aio.usage.spent_today(name) for name in gw.agents}
        today = {
            "spent_usd": spent,
            "caps_usd": caps,
            "total_usd": await gw.db.aio.usage.spent_today(),
            "total_cap_usd": gw.config.routing.spend_cap_usd_per_day,
        }
        return JSONResponse({"by": by, "rows": rows, "today": today})

    return [
        Route("/api/usage", usage),
        Route("/healthz", healthz),
        Route("/api/status", status),
        Route("/api/mcp", mcp_servers),
        Route("/metrics", metrics),
        Route("/api/sessions", list_sessions),
        Route("/api/sessions/{session_id}/messages", post_message, methods=["POST"]),
        Route("/api/sessions/{session_id}/events", get_events),
        WebSocketRoute("/api/sessions/{session_id}/ws", stream_events),
    ]


def _turn_options(body: dict[str, Any]) -> dict[str, Any]:
    """What a message may ask of its turn: the first step's tool choice, whether a person is
    there to answer approvals ("ask") or not ("deny": held calls are denied at once), and
    who sent it (anyone but the owner taints the turn)."""
    options: dict[str, Any] = {}
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, str) or not choice:
            raise ApiError(
                400, "invalid_request", "'tool_choice' must be auto, none, required or a tool's name"
            )
        options["tool_choice"] = choice
    approvals = body.get("approvals", "ask")
    if approvals not in ("ask", "deny"):
        raise ApiError(400, "invalid_request", "'approvals' must be ask (a person may answer) or deny")
    options["approvals"] = approvals
    sender = body.get("sender", "owner")
    if not isinstance(sender, str) or not sender:
        raise ApiError(400, "invalid_request", "'sender' must be a name ('owner' for you)")
    options["sender"] = sender
    return options


def _session_id(request: Request) -> str:
    session_id = request.path_params["session_id"]
    try:
        return check_session_id(session_id)
    except HermitCrabError as exc:
        raise ApiError(400, "invalid_session_id", str(exc)) from None


def _int_param(request: Request, name: str, default: int) -> int:
    raw: Any = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return max(int(raw), 0)
    except ValueError:
        raise ApiError(400, "invalid_request", f"query parameter '{name}' must be a whole number") from None
