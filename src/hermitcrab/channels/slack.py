"""Slack, through its official SDK in Socket Mode (a WebSocket the app opens: no public
address needed). An event is acknowledged only once the gateway has taken it, so one cut
off mid-way is sent again by Slack; the inbox takes a message once (its channel and `ts`
are the source id). A dropped connection is opened again with backoff; Slack's own
"disconnect" (a planned refresh) is followed by the SDK."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.socket_mode.websockets import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from hermitcrab.channels.base import Attachment, Inbound, Link, split

if TYPE_CHECKING:
    from hermitcrab.config.schema import SlackChannel

log = logging.getLogger("hermitcrab.channels")

LIMIT = 4000  # Slack cuts a message at 40,000 characters and asks for under 4,000
MAX_FILE_BYTES = 20 * 1024 * 1024
CHECK_S = 2.0  # how often a quiet connection is looked at
TAKEN = {None, "file_share"}  # message subtypes that are a person writing (not edits, joins, bots)


class Slack:
    limit = LIMIT

    def __init__(self, name: str, config: SlackChannel, bot_token: str, app_token: str) -> None:
        self.name, self.config = name, config
        self._bot_token, self._app_token = bot_token, app_token
        self.link = Link(name)
        self.username: str | None = None
        self.user_id: str | None = None
        self._web: AsyncWebClient | None = None
        self._socket: SocketModeClient | None = None
        self._queue: asyncio.Queue[tuple[Inbound | None, str]] = asyncio.Queue()
        self._pending_files: dict[str, list[dict[str, Any]]] = {}  # message id: its files

    def _clients(self) -> tuple[AsyncWebClient, SocketModeClient]:
        """Made on first use: the SDK's client starts its tasks on the running loop."""
        if self._web is None or self._socket is None:
            self._web = AsyncWebClient(token=self._bot_token, base_url=self.config.api_url)
            self._socket = SocketModeClient(
                self._app_token,
                web_client=self._web,
                auto_reconnect_enabled=False,  # a failure is ours to retry, with backoff
                logger=logging.getLogger("hermitcrab.channels.slack_sdk"),
            )
            self._socket.socket_mode_request_listeners.append(self._on_request)
        return self._web, self._socket

    async def _on_request(self, client: Any, request: SocketModeRequest) -> None:
        inbound = self._inbound(request.payload) if request.type == "events_api" else None
        await self._queue.put((inbound, request.envelope_id))

    async def receive(self) -> AsyncIterator[Inbound]:
        web, socket = self._clients()
        while True:
            if not await socket.is_connected():
                try:
                    if self.user_id is None:
                        me = await web.auth_test()
                        self.user_id, self.username = me.get("user_id"), me.get("user")
                    await socket.connect_to_new_endpoint()
                except Exception as exc:  # SlackApiError, the socket's, aiohttp's: all retried
                    await self.link.down(_said(exc))
                    continue
                self.link.up()
            try:
                inbound, envelope = await asyncio.wait_for(self._queue.get(), CHECK_S)
            except TimeoutError:
                continue
            if inbound is not None:
                yield await self._with_files(inbound)
            try:  # taken: Slack may stop sending it
                await socket.send_socket_mode_response(SocketModeResponse(envelope_id=envelope))
            except Exception as exc:  # it comes again, and the inbox takes it once
                log.info("channel %s: an acknowledgement was lost (%s)", self.name, exc)

    def _inbound(self, payload: dict[str, Any]) -> Inbound | None:
        event = payload.get("event")
        if not isinstance(event, dict) or event.get("type") != "message":
            return None
        if event.get("subtype") not in TAKEN or event.get("bot_id") or not event.get("user"):
            return None
        if event.get("user") == self.user_id or not isinstance(event.get("channel"), str):
            return None
        text = str(event.get("text") or "")
        files = tuple(f for f in event.get("files") or [] if isinstance(f, dict))
        if not text and not files:
            return None
        mention = f"<@{self.user_id}>" if self.user_id else None
        message_id = str(event.get("ts") or event.get("client_msg_id") or payload.get("event_id"))
        if files:
            self._pending_files[message_id] = list(files)
        return Inbound(
            channel=self.name,
            chat=event["channel"],
            sender=str(event["user"]),
            sender_name=str(event["user"]),
            text=text,
            message_id=message_id,
            direct=event.get("channel_type") == "im",
            mentioned=bool(mention and mention in text),
        )

    async def _with_files(self, inbound: Inbound) -> Inbound:
        """The files, downloaded with the bot's token (Slack's file URLs ask for it); one too
        big or not fetched is said in the text instead."""
        event_files = self._pending_files.pop(inbound.message_id, None)
        if not event_files:
            return inbound
        kept, text = [], inbound.text
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            for found in event_files:
                name = str(found.get("name") or "file")
                url = found.get("url_private_download") or found.get("url_private")
                try:
                    if int(found.get("size") or 0) > MAX_FILE_BYTES:
                        raise ValueError(f"{name} is over {MAX_FILE_BYTES // 2**20} MB")
                    bearer = {"Authorization": f"Bearer {self._bot_token}"}
                    response = await http.get(str(url), headers=bearer)
                    if response.status_code != 200 or len(response.content) > MAX_FILE_BYTES:
                        raise ValueError(f"the download of {name} failed (HTTP {response.status_code})")
                except (httpx.HTTPError, ValueError) as exc:
                    text += f"\n[a file came with this message but was not kept: {exc}]"
                    continue
                kept.append(Attachment(name, response.content))
        return dataclasses.replace(inbound, text=text, files=tuple(kept))

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        web, _ = self._clients()
        for piece in split(text, self.limit):
            try:
                await web.chat_postMessage(channel=chat, text=piece)
            except SlackApiError as exc:
                raise RuntimeError(_said(exc)) from None

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._web is not None and getattr(self._web, "session", None) is not None:
            await self._web.session.close()


def _said(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return f"Slack: {exc.response.get('error', 'error')}"
    detail = re.sub(r"xox[a-z]-[\w-]+|xapp-[\w-]+", "<token>", str(exc))  # never a token in a log
    return f"Slack: {type(exc).__name__}: {detail}"
