"""Slack on loopback, speaking its wire protocol: the Web API (POST /api/METHOD with a bearer
token, {"ok": ...} out), Socket Mode (apps.connections.open gives a WebSocket URL; "hello",
then events_api envelopes, each acknowledged by its envelope_id; one not acknowledged is
sent again on the next connection with retry_attempt raised), and private file URLs that
ask for the bot's token. Slack's cloud cannot be reached from a test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.channels.loopback import serve
from tests.conftest import free_port

BOT_TOKEN, APP_TOKEN = "xoxb-1-test-bot-token", "xapp-1-test-app-token"
BOT_ID, BOT_NAME = "UBOT", "crab"


@dataclass
class FakeSlack:
    port: int = field(default_factory=free_port)
    envelopes: list[dict[str, Any]] = field(default_factory=list)  # not yet acknowledged
    sent: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    connections: int = 0
    down_for: int = 0  # the next this many apps.connections.open fail
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _sockets: list[WebSocket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def say(
        self,
        user: str,
        text: str,
        channel: str | None = None,
        files: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
        ts: str | None = None,
    ) -> str:
        """A person writes: in a direct chat (D + user) unless `channel` names one."""
        n = next(self._ids)
        event: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts or f"{int(time.time())}.{n:06d}",
            "channel": channel or f"D{user}",
            "channel_type": "channel" if channel else "im",
        }
        if files:
            event["subtype"] = "file_share"
            event["files"] = []
            for name, data in files:
                self.files[f"F{n}{name}"] = data
                url = f"http://127.0.0.1:{self.port}/files-pri/F{n}{name}"
                event["files"].append(
                    {"id": f"F{n}", "name": name, "size": len(data), "url_private_download": url}
                )
        with self._lock:
            self.envelopes.append(
                {
                    "envelope_id": f"env-{n}",
                    "type": "events_api",
                    "accepts_response_payload": False,
                    "retry_attempt": 0,
                    "payload": {"type": "event_callback", "event_id": f"Ev{n}", "event": event},
                    "_sent": set(),
                }
            )
        return event["ts"]

    def to(self, channel: str) -> list[str]:
        return [m["text"] for m in self.sent if m["channel"] == channel]

    def drop(self) -> None:
        """Every open Socket Mode connection closed from Slack's side."""
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(socket.close(1011), self._loop).result(5)

    def app(self) -> Starlette:
        async def api(request: Request) -> JSONResponse:
            method = request.path_params["method"]
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            if method == "apps.connections.open":
                with self._lock:
                    if self.down_for > 0:
                        self.down_for -= 1
                        return JSONResponse({"ok": False, "error": "internal_error"}, 500)
                if bearer != APP_TOKEN:
                    return JSONResponse({"ok": False, "error": "invalid_auth"})
                return JSONResponse(
                    {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={time.time()}"}
                )
            if bearer != BOT_TOKEN:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            raw = await request.body()
            if request.headers.get("content-type", "").startswith("application/json"):
                body = json.loads(raw or b"{}")
            else:
                body = dict((await request.form()).items())
            if method == "auth.test":
                return JSONResponse({"ok": True, "user_id": BOT_ID, "user": BOT_NAME, "team_id": "T1"})
            if method == "chat.postMessage":
                text = str(body.get("text", ""))
                if len(text) > 40000:
                    return JSONResponse({"ok": False, "error": "msg_too_long"})
                channel = str(body.get("channel"))
                if channel.startswith("U"):  # a user's id: Slack posts in the app's direct chat
                    channel = f"D{channel}"
                with self._lock:
                    self.sent.append({"channel": channel, "text": text})
                return JSONResponse({"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}"})
            return JSONResponse({"ok": False, "error": "unknown_method"}, 404)

        async def download(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
                return Response(status_code=403)
            data = self.files.get(request.path_params["key"])
            return (
                Response(data, media_type="application/octet-stream")
                if data is not None
                else Response(status_code=404)
            )

        async def link(socket: WebSocket) -> None:
            await socket.accept()
            self._loop = asyncio.get_running_loop()
            with self._lock:
                self.connections += 1
                self._sockets.append(socket)
                mine = self.connections
            hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}
            await socket.send_text(json.dumps(hello))

            async def push() -> None:
                while True:
                    with self._lock:
                        due = [e for e in self.envelopes if mine not in e["_sent"]]
                        for envelope in due:
                            if envelope["_sent"]:  # sent before, never acknowledged: a retry
                                envelope["retry_attempt"] += 1
                            envelope["_sent"].add(mine)
                    for envelope in due:
                        await socket.send_text(
                            json.dumps({k: v for k, v in envelope.items() if k != "_sent"})
                        )
                    await asyncio.sleep(0.02)

            pusher = asyncio.create_task(push())
            try:
                while True:
                    answer = json.loads(await socket.receive_text())
                    with self._lock:
                        self.envelopes = [
                            e for e in self.envelopes if e["envelope_id"] != answer.get("envelope_id")
                        ]
            except (WebSocketDisconnect, RuntimeError):
                pass
            finally:
                pusher.cancel()
                with self._lock:
                    self._sockets.remove(socket)

        return Starlette(
            routes=[
                Route("/api/{method}", api, methods=["POST", "GET"]),
                Route("/files-pri/{key}", download),
                WebSocketRoute("/link/", link),
            ]
        )

    def serve(self) -> uvicorn.Server:
        return serve(self.app(), self.port)
