"""A Telegram Bot API server on loopback, speaking its wire protocol (POST /bot<token>/<method>,
JSON in and {"ok": ..., "result": ...} out, getUpdates long polling with offsets): Telegram's
cloud cannot be reached from a test. It can also be down for a while."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.channels.loopback import serve
from tests.conftest import free_port

TOKEN = "123456:TEST-token-for-the-fake-bot"
BOT = "crab_test_bot"


@dataclass
class FakeTelegram:
    port: int = field(default_factory=free_port)
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    down_for: int = 0  # the next this many calls fail with 502
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file id: (path, content)
    _next_update: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def say(
        self, sender: int, text: str, chat: int | None = None, name: str = "ana", group: bool = False
    ) -> int:
        """A person writes to the bot (in a group when `group`); returns the update id."""
        with self._lock:
            self._next_update += 1
            update = {
                "update_id": self._next_update,
                "message": {
                    "message_id": self._next_update * 10,
                    "from": {"id": sender, "is_bot": False, "first_name": name.title(), "username": name},
                    "chat": {
                        "id": chat if chat is not None else sender,
                        "type": "group" if group else "private",
                    },
                    "date": int(time.time()),
                    "text": text,
                },
            }
            self.updates.append(update)
            return self._next_update

    def send_file(
        self,
        sender: int,
        name: str,
        data: bytes,
        caption: str = "",
        size: int | None = None,
        kind: str = "document",
    ) -> None:
        """A person sends the bot a document (`size`: what the update claims, if not its own)."""
        with self._lock:
            self._next_update += 1
            file_id = f"file-{self._next_update}"
            self.files[file_id] = (f"documents/{file_id}-{name}", data)
            message = {
                "message_id": self._next_update * 10,
                "from": {"id": sender, "is_bot": False, "first_name": "Ana", "username": "ana"},
                "chat": {"id": sender, "type": "private"},
                "date": int(time.time()),
            }
            described = {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_size": size or len(data)}
            if kind == "document":
                message["document"] = {**described, "file_name": name}
            elif kind == "photo":  # sizes, smallest first; the last is the original
                thumb = {
                    "file_id": "thumb",
                    "file_unique_id": "u-thumb",
                    "file_size": 10,
                    "width": 90,
                    "height": 90,
                }
                message["photo"] = [thumb, {**described, "width": 1280, "height": 960}]
            else:  # a voice note: no name of its own
                message[kind] = {**described, "duration": 3, "mime_type": "audio/ogg"}
            if caption:
                message["caption"] = caption
            self.updates.append({"update_id": self._next_update, "message": message})

    def again(self) -> None:
        """The last message delivered once more, under a new update id: what Telegram does
        when a poll was cut off before its offset confirmed it."""
        with self._lock:
            self._next_update += 1
            self.updates.append({**self.updates[-1], "update_id": self._next_update})

    def to(self, chat: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == str(chat)]

    def app(self) -> Starlette:
        async def call(request: Request) -> JSONResponse:
            token, method = request.path_params["token"], request.path_params["method"]
            with self._lock:
                if self.down_for > 0:
                    self.down_for -= 1
                    return JSONResponse({"ok": False, "error_code": 502, "description": "Bad Gateway"}, 502)
            if token != TOKEN:
                return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
            raw = (
                await request.body()
            )  # JSON, or a form (as python-telegram-bot sends): both are the Bot API's
            if request.headers.get("content-type", "").startswith("application/json"):
                body = json.loads(raw or b"{}")
            else:
                body = dict((await request.form()).items())
            if method == "getMe":
                me = {"id": 42, "is_bot": True, "first_name": "Crab", "username": BOT}
                return JSONResponse({"ok": True, "result": me})
            if method == "getUpdates":
                self.polls += 1
                deadline = time.monotonic() + min(float(body.get("timeout", 0)), 2.0)
                while True:
                    with self._lock:
                        ready = [u for u in self.updates if u["update_id"] >= int(body.get("offset", 0))]
                    if ready or time.monotonic() >= deadline:
                        return JSONResponse({"ok": True, "result": ready})
                    await asyncio.sleep(0.02)
            if method == "getFile":
                found = self.files.get(str(body.get("file_id")))
                if found is None:
                    return JSONResponse(
                        {"ok": False, "error_code": 400, "description": "file not found"}, 400
                    )
                found_file = {"file_id": body["file_id"], "file_unique_id": f"u-{body['file_id']}",
                              "file_path": found[0], "file_size": len(found[1])}  # fmt: skip
                return JSONResponse({"ok": True, "result": found_file})
            if method == "sendMessage":
                text = str(body.get("text", ""))
                if len(text) > 4096:
                    return JSONResponse(
                        {"ok": False, "error_code": 400, "description": "message is too long"}, 400
                    )
                with self._lock:
                    self.sent.append({"chat_id": str(body["chat_id"]), "text": text})
                chat = {"id": int(body["chat_id"]), "type": "private"}
                sent = {"message_id": len(self.sent), "date": int(time.time()), "chat": chat, "text": text}
                return JSONResponse({"ok": True, "result": sent})
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

        async def download(request: Request) -> Response:
            if request.path_params["token"] != TOKEN:
                return Response(status_code=401)
            wanted = request.path_params["path"]
            for path, data in self.files.values():
                if path == wanted:
                    return Response(data, media_type="application/octet-stream")
            return Response(status_code=404)

        return Starlette(
            routes=[
                Route("/bot{token}/{method}", call, methods=["POST"]),
                Route("/file/bot{token}/{path:path}", download),
            ]
        )

    def serve(self) -> uvicorn.Server:
        return serve(self.app(), self.port)
