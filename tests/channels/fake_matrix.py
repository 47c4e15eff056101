"""A Matrix homeserver on loopback, speaking the client-server API as far as a bot uses it:
/sync long polling with batch tokens (rooms joined, with their summary and members, and
invites), sending an event by transaction id (sent once, whatever the retries), joining,
and media downloads that ask for the token. A real homeserver (Synapse) is far too heavy
for a test; this speaks the documented wire protocol."""

from __future__ import annotations

import asyncio
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

TOKEN = "syt_test_access_token_42"
BOT = "@crab:example.test"


@dataclass
class Room:
    members: list[str]
    invited: bool = False  # the bot is invited, not yet joined
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (batch, event)
    joined_at: int = 0


@dataclass
class FakeMatrix:
    port: int = field(default_factory=free_port)
    rooms: dict[str, Room] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, bytes] = field(default_factory=dict)
    syncs: list[str | None] = field(default_factory=list)  # the since token of each sync
    down_for: int = 0  # the next this many syncs answer 502
    batch: int = 1
    _txns: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def room(self, room_id: str, *people: str, invite: bool = False) -> None:
        """A room with these people and the bot (invited, when `invite`)."""
        with self._lock:
            self.batch += 1
            members = [*people] if invite else [BOT, *people]
            self.rooms[room_id] = Room(members, invited=invite, joined_at=self.batch)

    def say(self, room_id: str, sender: str, text: str = "", file: tuple[str, bytes] | None = None) -> str:
        with self._lock:
            self.batch += 1
            content: dict[str, Any] = {"msgtype": "m.text", "body": text}
            if file is not None:
                media_id = f"m{self.batch}"
                self.media[media_id] = file[1]
                content = {"msgtype": "m.file", "body": file[0], "url": f"mxc://example.test/{media_id}",
                           "info": {"size": len(file[1])}}  # fmt: skip
            event = {"type": "m.room.message", "event_id": f"$e{self.batch}", "sender": sender,
                     "origin_server_ts": int(time.time() * 1000), "content": content}  # fmt: skip
            self.rooms[room_id].events.append((self.batch, event))
            return event["event_id"]

    def to(self, room_id: str) -> list[str]:
        return [m["body"] for m in self.sent if m["room"] == room_id]

    def _sync(self, since: int | None) -> dict[str, Any]:
        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        for room_id, room in self.rooms.items():
            if room.invited:
                member = {"type": "m.room.member", "state_key": BOT, "sender": room.members[0],
                          "content": {"membership": "invite"}}  # fmt: skip
                invite[room_id] = {"invite_state": {"events": [member]}}
                continue
            new = [e for batch, e in room.events if since is None or batch > since]
            fresh = since is None or room.joined_at > since
            if not new and not fresh:
                continue
            state = [_member(room_id, who) for who in room.members]
            join[room_id] = {
                "timeline": {"events": new, "limited": False},
                "state": {"events": state if fresh else []},
                "summary": {"m.joined_member_count": len(room.members), "m.invited_member_count": 0},
            }
        return {"next_batch": str(self.batch), "rooms": {"join": join, "invite": invite}}

    def app(self) -> Starlette:
        def authorized(request: Request) -> bool:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            return TOKEN in (bearer, request.query_params.get("access_token"))

        def refused() -> JSONResponse:
            return JSONResponse({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"}, 401)

        async def sync(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            since = request.query_params.get("since")
            with self._lock:
                self.syncs.append(since)
                if self.down_for > 0:
                    self.down_for -= 1
                    return JSONResponse({"errcode": "M_UNKNOWN", "error": "Bad Gateway"}, 502)
            wait = min(int(request.query_params.get("timeout", "0")) / 1000, 2.0)
            deadline = time.monotonic() + wait
            while True:
                with self._lock:
                    body = self._sync(int(since) if since else None)
                if (
                    body["rooms"]["join"]
                    or body["rooms"]["invite"]
                    or time.monotonic() >= deadline
                    or not since
                ):
                    return JSONResponse(body)
                await asyncio.sleep(0.02)

        async def send(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            room_id, txn = request.path_params["room"], request.path_params["txn"]
            body = await request.json()
            with self._lock:
                if txn not in self._txns:
                    if len(str(body.get("body", ""))) > 60_000:
                        return JSONResponse({"errcode": "M_TOO_LARGE", "error": "event too large"}, 413)
                    self.batch += 1
                    self._txns[txn] = f"$s{self.batch}"
                    self.sent.append({"room": room_id, "body": body.get("body")})
                    event = {"type": "m.room.message", "event_id": self._txns[txn], "sender": BOT,
                             "origin_server_ts": int(time.time() * 1000), "content": body}  # fmt: skip
                    self.rooms[room_id].events.append((self.batch, event))
            return JSONResponse({"event_id": self._txns[txn]})

        async def join(request: Request) -> JSONResponse:
            if not authorized(request):
                return refused()
            room_id = request.path_params["room"]
            with self._lock:
                room = self.rooms.get(room_id)
                if room is None:
                    return JSONResponse({"errcode": "M_NOT_FOUND", "error": "no such room"}, 404)
                self.batch += 1
                room.invited, room.joined_at = False, self.batch
                room.members.append(BOT)
            return JSONResponse({"room_id": room_id})

        async def download(request: Request) -> Response:
            if not authorized(request):
                return refused()
            data = self.media.get(request.path_params["media"])
            return (
                Response(data, media_type="application/octet-stream")
                if data is not None
                else Response(status_code=404)
            )

        return Starlette(
            routes=[
                Route("/_matrix/client/v3/sync", sync),
                Route("/_matrix/client/v3/rooms/{room}/send/{type}/{txn}", send, methods=["PUT"]),
                Route("/_matrix/client/v3/join/{room}", join, methods=["POST"]),
                Route("/_matrix/client/v1/media/download/{server}/{media}", download),
                Route("/_matrix/client/v1/media/download/{server}/{media}/{name}", download),
            ]
        )

    def serve(self) -> uvicorn.Server:
        return serve(self.app(), self.port)


def _member(room_id: str, who: str) -> dict[str, Any]:
    return {
        "type": "m.room.member",
        "event_id": f"$m{room_id}{who}",
        "state_key": who,
        "sender": who,
        "origin_server_ts": 0,
        "content": {"membership": "join"},
    }
