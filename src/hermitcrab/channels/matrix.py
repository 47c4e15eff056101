"""Matrix, through the client-server API with matrix-nio: /sync long polling, its batch token
kept in the store once a batch is taken, so a restart goes on where it stopped (nothing
missed, nothing answered twice; the inbox takes an event once by its id). Invites are
accepted; a room of two (the agent and one person) is a direct chat, any other a group.
Encrypted rooms are not read: the agent holds no keys."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadError,
    JoinError,
    RoomMessageMedia,
    RoomMessageText,
    RoomSendError,
    SyncError,
)

from hermitcrab.channels.base import Attachment, Inbound, Link, split

if TYPE_CHECKING:
    from hermitcrab.config.schema import MatrixChannel

log = logging.getLogger("hermitcrab.channels")

LIMIT = 16_000  # an event is at most 64 KiB of JSON: a body of 16,000 characters fits
MAX_FILE_BYTES = 20 * 1024 * 1024


class Cursor(Protocol):
    def get(self, channel: str) -> str | None: ...
    def set(self, channel: str, cursor: str) -> None: ...


class Matrix:
    limit = LIMIT

    def __init__(self, name: str, config: MatrixChannel, token: str, cursors: Cursor) -> None:
        self.name, self.config = name, config
        self._token, self._cursors = token, cursors
        self.link = Link(name)
        self.username = config.user_id
        self._client: AsyncClient | None = None

    def _get(self) -> AsyncClient:
        if self._client is None:  # made on the running loop: aiohttp's session wants one
            client = AsyncClient(
                self.config.homeserver,
                self.config.user_id,
                device_id="HERMITCRAB",
                # max_timeouts=0: a lost connection is ours to retry, with backoff and said
                config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False, max_timeouts=0),
            )
            client.access_token, client.user_id = self._token, self.config.user_id
            self._client = client
        return self._client

    async def receive(self) -> AsyncIterator[Inbound]:
        client = self._get()
        since = self._cursors.get(self.name)
        while True:
            try:
                response = await client.sync(timeout=self.config.poll_seconds * 1000, since=since)
                if isinstance(response, SyncError):
                    raise RuntimeError(f"sync: {response.status_code or ''} {response.message}".strip())
            except Exception as exc:  # aiohttp's, a timeout, the server's refusal: all retried
                await self.link.down(self._clean(f"Matrix: {type(exc).__name__}: {exc}"))
                continue
            self.link.up()
            for room_id in response.rooms.invite:
                joined = await client.join(room_id)
                if isinstance(joined, JoinError):
                    log.warning("channel %s: could not join %s: %s", self.name, room_id, joined.message)
            if since is not None:  # the first sync ever is history from before: not answered
                for room_id, room in response.rooms.join.items():
                    for event in room.timeline.events:
                        inbound = self._inbound(room_id, event)
                        if inbound is not None:
                            yield await self._with_file(event, inbound)
            since = response.next_batch
            self._cursors.set(self.name, since)  # every event of the batch is taken

    def _inbound(self, room_id: str, event: Any) -> Inbound | None:
        if not isinstance(event, RoomMessageText | RoomMessageMedia):
            return None
        if event.sender == self.config.user_id:
            return None
        room = self._get().rooms.get(room_id)
        members = room.member_count if room is not None else 0
        text = event.body if isinstance(event, RoomMessageText) else ""
        content = event.source.get("content") or {}
        named = (content.get("m.mentions") or {}).get("user_ids") or []
        localpart = self.config.user_id.split(":")[0].lstrip("@").lower()
        return Inbound(
            channel=self.name,
            chat=room_id,
            sender=event.sender,
            sender_name=(room.user_name(event.sender) if room is not None else None) or event.sender,
            text=text,
            message_id=event.event_id,
            direct=members == 2,
            mentioned=self.config.user_id in named
            or self.config.user_id in text
            or localpart in text.lower(),
        )

    async def _with_file(self, event: Any, inbound: Inbound) -> Inbound:
        if not isinstance(event, RoomMessageMedia):
            return inbound
        name = event.body or "file"
        size = int(((event.source.get("content") or {}).get("info") or {}).get("size") or 0)
        note = None
        if size > MAX_FILE_BYTES:
            note = f"{name} is over {MAX_FILE_BYTES // 2**20} MB"
        else:
            try:
                got = await self._get().download(mxc=event.url)
            except Exception as exc:
                got = DownloadError(self._clean(str(exc)))
            if isinstance(got, DownloadError):
                note = f"the download of {name} failed ({got.message})"
            elif len(got.body) > MAX_FILE_BYTES:
                note = f"{name} is over {MAX_FILE_BYTES // 2**20} MB"
            else:
                return dataclasses.replace(inbound, files=(Attachment(name, got.body),))
        return dataclasses.replace(inbound, text=f"[a file came with this message but was not kept: {note}]")

    def _direct_room(self, user_id: str) -> str | None:
        for room_id, room in self._get().rooms.items():
            if room.member_count == 2 and user_id in room.users:
                return room_id
        return None

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        client = self._get()
        room_id = self._direct_room(chat) if chat.startswith("@") else chat  # a person: their chat
        if room_id is None:
            raise RuntimeError(f"no direct chat with {chat}")
        for piece in split(text, self.limit):
            content = {"msgtype": "m.text", "body": piece}
            sent = await client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True)
            if isinstance(sent, RoomSendError):
                raise RuntimeError(f"Matrix: {sent.status_code or ''} {sent.message}".strip())

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "<token>")  # nio puts the token in the query string

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
