"""The chat channels' state, and pairing: who waits with a code, who is approved."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hermitcrab.gateway.http import ApiError, read_body, read_json
from hermitcrab.gateway.service import Gateway


def routes(gw: Gateway) -> list[Route]:
    async def body(request: Request) -> dict[str, Any]:
        data = await read_json(request, gw.config.gateway.max_request_bytes)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        return data

    async def channels(request: Request) -> JSONResponse:
        return JSONResponse({"channels": gw.channels.describe() if gw.channels else []})

    async def pairing(request: Request) -> JSONResponse:
        assert gw.db is not None
        senders = await asyncio.to_thread(gw.db.pairing.all)
        return JSONResponse({"senders": [s.to_json() for s in senders]})

    async def approve(request: Request) -> JSONResponse:
        from hermitcrab.store.pairing import GUEST, OWNER, PairingError

        data = await body(request)
        code, role = data.get("code"), data.get("role", GUEST)
        if not isinstance(code, str) or role not in (OWNER, GUEST):
            raise ApiError(400, "invalid_request", 'send {"code": "ABC123", "role": "owner" | "guest"}')
        assert gw.db is not None
        try:
            sender = await asyncio.to_thread(gw.db.pairing.approve, code, role, str(data.get("actor", "api")))
        except PairingError as exc:
            raise ApiError(404, "no_such_code", str(exc)) from None
        if gw.channels is not None:
            await gw.channels.welcome(sender.channel, sender.sender, role)
        return JSONResponse(sender.to_json())

    async def revoke(request: Request) -> JSONResponse:
        data = await body(request)
        channel, sender = data.get("channel"), data.get("sender")
        if not isinstance(channel, str) or not isinstance(sender, str):
            raise ApiError(400, "invalid_request", 'send {"channel": "telegram", "sender": "12345"}')
        assert gw.db is not None
        if not await asyncio.to_thread(gw.db.pairing.revoke, channel, sender, str(data.get("actor", "api"))):
            raise ApiError(404, "not_paired", f"{sender} is not paired on {channel}")
        return JSONResponse({"revoked": True, "channel": channel, "sender": sender})

    async def hook(request: Request) -> JSONResponse:
        """A signed message for a webhook channel (the signature is its auth, not the token)."""
        from hermitcrab.channels.webhook import SIGNATURE, TIMESTAMP, HookRefused, Webhook

        name = request.path_params["name"]
        channels = await gw.channels_ready()
        running = channels.running.get(name) if channels else None
        if running is None or not isinstance(running.service, Webhook):
            raise ApiError(404, "not_found", f"no webhook channel named {name!r}")
        raw = await read_body(request, gw.config.gateway.max_request_bytes)
        try:
            inbound = running.service.take(
                request.headers.get(TIMESTAMP, ""), request.headers.get(SIGNATURE, ""), raw
            )
        except HookRefused as exc:
            raise ApiError(exc.status, "refused", str(exc)) from None
        assert channels is not None
        event = await channels.handle(running, inbound)
        return JSONResponse(
            {"message_id": event.id, "session_id": event.session_id, "duplicate": bool(event.duplicate)},
            status_code=202,
        )

    return [
        Route("/hooks/{name}", hook, methods=["POST"]),
        Route("/api/channels", channels),
        Route("/api/pairing", pairing),
        Route("/api/pairing/approve", approve, methods=["POST"]),
        Route("/api/pairing/revoke", revoke, methods=["POST"]),
    ]
