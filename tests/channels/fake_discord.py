"""Discord on loopback, speaking its wire protocol as a bot uses it: the REST API (a "Bot"
token in Authorization; /users/@me, /gateway/bot, messages, direct chats) and the gateway
WebSocket (zlib-stream compressed JSON: HELLO, IDENTIFY or RESUME, heartbeats and their
ACKs, READY, MESSAGE_CREATE dispatches with sequence numbers; a RESUME replays what the
session missed). Discord's cloud cannot be reached from a test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.channels.loopback import serve
from tests.conftest import free_port

TOKEN = "MTIz.test-discord-bot-token"
BOT_ID, BOT_NAME = 900, "crab"


def user(uid: int, name: str = "ana", bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(uid),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
    }


@dataclass
class FakeDiscord:
    port: int = field(default_factory=free_port)
    dispatches: list[dict[str, Any]] = field(default_factory=list)  # with "s": their sequence
    sent: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    identifies: int = 0
    resumes: int = 0
    down_for: int = 0  # the next this many logins (/users/@me) answer 502
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(10_000))
    _sockets: list[WebSocket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def _message(self, channel: int, author: dict[str, Any], content: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": str(next(self._ids)),
            "channel_id": str(channel),
            "author": author,
            "content": content,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [user(BOT_ID, BOT_NAME, bot=True)] if f"<@{BOT_ID}>" in content else [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            **extra,
        }

    def say(
        self,
        sender: int,
        content: str,
        guild_channel: int | None = None,
        file: tuple[str, bytes] | None = None,
    ) -> str:
        """A person writes: in their direct chat with the bot (channel 5000 + id), or in a
        guild's channel."""
        extra: dict[str, Any] = {"guild_id": "77"} if guild_channel else {}
        message = self._message(guild_channel or 5000 + sender, user(sender), content, **extra)
        if file is not None:
            key = f"{message['id']}/{file[0]}"
            self.files[key] = file[1]
            url = f"http://127.0.0.1:{self.port}/attachments/{key}"
            message["attachments"] = [
                {"id": message["id"], "filename": file[0], "size": len(file[1]), "url": url, "proxy_url": url}
            ]
        with self._lock:
            self.dispatches.append(
                {"op": 0, "t": "MESSAGE_CREATE", "d": message, "s": len(self.dispatches) + 2}
            )
        return message["id"]

    def to(self, channel: int) -> list[str]:
        return [m["content"] for m in self.sent if m["channel_id"] == str(channel)]

    def drop(self) -> None:
        """Every gateway connection closed from Discord's side, resumable (4000)."""
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(socket.close(4000), self._loop).result(5)

    def app(self) -> Starlette:
        def authorized(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bot {TOKEN}"

        def refused() -> JSONResponse:
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, 401)

        async def me(request: Request) -> JSONResponse:
            with self._lock:
                if self.down_for > 0:
                    self.down_for -= 1
                    return JSONResponse({"message": "Bad Gateway", "code": 0}, 502)
            return JSONResponse(user(BOT_ID, BOT_NAME, bot=True)) if authorized(request) else refused()

        async def application(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            app = {"id": str(BOT_ID), "name": BOT_NAME, "description": "", "icon": None, "flags": 0,
                   "bot_public": False, "bot_require_code_grant": False, "owner": user(1, "owner"),
                   "verify_key": "0" * 64}  # fmt: skip
            return JSONResponse(app)

        async def gateway(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
            url = f"ws://127.0.0.1:{self.port}/gateway"
            return JSONResponse({"url": url, "shards": 1, "session_start_limit": limit})

        async def post_message(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            body = await request.json()
            content = str(body.get("content", ""))
            if len(content) > 2000:
                return JSONResponse({"message": "Invalid Form Body", "code": 50035}, 400)
            channel = int(request.path_params["channel"])
            message = self._message(channel, user(BOT_ID, BOT_NAME, bot=True), content)
            with self._lock:
                self.sent.append(message)
            return JSONResponse(message)

        async def open_dm(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            recipient = int((await request.json())["recipient_id"])
            return JSONResponse({"id": str(5000 + recipient), "type": 1, "recipients": [user(recipient)]})

        async def attachment(request: Request) -> Response:
            data = self.files.get(request.path_params["key"])
            return Response(data) if data is not None else Response(status_code=404)

        async def link(socket: WebSocket) -> None:
            await socket.accept()
            self._loop = asyncio.get_running_loop()
            assert socket.query_params.get("compress") == "zlib-stream"
            squeeze = zlib.compressobj()

            async def send(payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                await socket.send_bytes(squeeze.compress(data) + squeeze.flush(zlib.Z_SYNC_FLUSH))

            await send({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
            with self._lock:
                self._sockets.append(socket)
            sent_up_to = None
            pusher: asyncio.Task[None] | None = None

            async def push() -> None:
                nonlocal sent_up_to
                while True:
                    with self._lock:
                        due = [d for d in self.dispatches if sent_up_to is None or d["s"] > sent_up_to]
                    for dispatch in due:
                        await send(dispatch)
                        sent_up_to = dispatch["s"]
                    await asyncio.sleep(0.02)

            try:
                while True:
                    frame = json.loads(await socket.receive_text())
                    op, data = frame.get("op"), frame.get("d")
                    if op == 1:
                        await send({"op": 11, "d": None, "s": None, "t": None})
                    elif op in (2, 6) and data.get("token") != TOKEN:
                        await socket.close(4004)  # authentication failed
                        return
                    elif op == 2:
                        self.identifies += 1
                        sent_up_to = len(self.dispatches) + 1  # a new session: nothing from before
                        ready = {
                            "v": 10,
                            "user": user(BOT_ID, BOT_NAME, bot=True),
                            "guilds": [],
                            "session_id": f"session-{self.identifies}",
                            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                            "application": {"id": str(BOT_ID), "flags": 0},
                            "private_channels": [],
                        }
                        await send({"op": 0, "t": "READY", "s": 1, "d": ready})
                        pusher = asyncio.create_task(push())
                    elif op == 6:
                        self.resumes += 1
                        sent_up_to = int(data.get("seq") or 0)  # replay what it missed
                        pusher = asyncio.create_task(push())
                        await send({"op": 0, "t": "RESUMED", "s": sent_up_to, "d": {}})
            except (WebSocketDisconnect, RuntimeError):
                pass
            finally:
                if pusher is not None:
                    pusher.cancel()
                with self._lock:
                    self._sockets.remove(socket)

        return Starlette(
            routes=[
                Route("/api/v10/users/@me", me),
                Route("/api/v10/gateway/bot", gateway),
                Route("/api/v10/oauth2/applications/@me", application),
                Route("/api/v10/channels/{channel}/messages", post_message, methods=["POST"]),
                Route("/api/v10/users/@me/channels", open_dm, methods=["POST"]),
                Route("/attachments/{key:path}", attachment),
                WebSocketRoute("/gateway", link),
            ]
        )

    def serve(self) -> uvicorn.Server:
        return serve(self.app(), self.port)
