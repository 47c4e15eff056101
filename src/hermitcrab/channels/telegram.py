"""Telegram, through the Bot API (long polling: no public address needed). Updates are
confirmed by the next poll's offset, so what arrived while the gateway was down, or was
cut off mid-poll, comes again; the inbox takes a message once (its id is the source id)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from hermitcrab.channels.base import Attachment, Inbound, Link, split

if TYPE_CHECKING:
    from hermitcrab.config.schema import TelegramChannel

log = logging.getLogger("hermitcrab.channels")

LIMIT = 4096  # sendMessage's text, in characters
MAX_FILE_BYTES = 20 * 1024 * 1024  # what the Bot API lets a bot download


class TelegramError(Exception):
    pass


class Telegram:
    limit = LIMIT

    def __init__(self, name: str, config: TelegramChannel, token: str) -> None:
        self.name, self.config = name, config
        self._token = token
        self._base = f"{config.api_url.rstrip('/')}/bot{token}"
        self._http = httpx.AsyncClient(timeout=config.poll_seconds + 15, trust_env=False)
        self._offset = 0
        self.username: str | None = None
        self.link = Link(name)

    async def _call(self, method: str, **params: Any) -> Any:
        try:
            response = await self._http.post(f"{self._base}/{method}", json=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TelegramError(f"{method}: {self._clean(str(exc)) or type(exc).__name__}") from None
        if not isinstance(body, dict) or not body.get("ok"):
            detail = body.get("description") if isinstance(body, dict) else None
            raise TelegramError(f"{method}: {detail or f'HTTP {response.status_code}'}")
        return body.get("result")

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "<token>")  # the token is in every URL: never in a log

    async def receive(self) -> AsyncIterator[Inbound]:
        while True:
            try:
                if self.username is None:
                    self.username = (await self._call("getMe") or {}).get("username")
                updates = await self._call(
                    "getUpdates",
                    offset=self._offset,
                    timeout=self.config.poll_seconds,
                    allowed_updates=["message"],
                )
            except TelegramError as exc:
                await self.link.down(str(exc))
                continue
            self.link.up()
            for update in updates or []:
                if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                    continue
                self._offset = max(self._offset, update["update_id"] + 1)
                inbound = self._inbound(update)
                if inbound is not None:
                    yield await self._with_file(update, inbound)

    def _inbound(self, update: dict[str, Any]) -> Inbound | None:
        message = update.get("message")
        if not isinstance(message, dict):
            return None
        document = _file_of(message)
        text = message.get("text") if isinstance(message.get("text"), str) else message.get("caption")
        if not isinstance(text, str):
            text = ""
        if not text and not isinstance(document, dict):
            return None  # a sticker, a location, an edit: not taken
        chat, sender = message.get("chat") or {}, message.get("from") or {}
        if "id" not in chat or "id" not in sender or sender.get("is_bot"):
            return None
        mention = f"@{self.username}".lower() if self.username else None
        return Inbound(
            channel=self.name,
            chat=str(chat["id"]),
            sender=str(sender["id"]),
            sender_name=str(sender.get("username") or sender.get("first_name") or sender["id"]),
            text=text,
            message_id=str(message.get("message_id", update["update_id"])),
            direct=chat.get("type") == "private",
            mentioned=bool(mention and mention in text.lower()),
        )

    async def _with_file(self, update: dict[str, Any], inbound: Inbound) -> Inbound:
        """The message with its file (a document, photo, voice note, audio or video) downloaded:
        getFile, then the file URL. One too big or not fetched is said in the text instead."""
        document = _file_of(update["message"])
        if not isinstance(document, dict) or not isinstance(document.get("file_id"), str):
            return inbound
        name = str(document.get("file_name") or "file")
        note = ""
        try:
            if int(document.get("file_size") or 0) > MAX_FILE_BYTES:
                raise TelegramError(f"{name} is over {MAX_FILE_BYTES // 2**20} MB")
            found = await self._call("getFile", file_id=document["file_id"])
            url = f"{self.config.api_url.rstrip('/')}/file/bot{self._token}/{found['file_path']}"
            response = await self._http.get(url)
            if response.status_code != 200 or len(response.content) > MAX_FILE_BYTES:
                raise TelegramError(f"the download of {name} failed (HTTP {response.status_code})")
        except (TelegramError, httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            note = f"\n[a file came with this message but was not kept: {self._clean(str(exc))}]"
            return dataclasses.replace(inbound, text=inbound.text + note)
        return dataclasses.replace(inbound, files=(Attachment(name, response.content),))

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        for piece in split(text, self.limit):
            await self._call("sendMessage", chat_id=chat, text=piece)

    async def close(self) -> None:
        await self._http.aclose()


# What a message may carry, and the name a file gets when the service gives none.
FILE_KINDS = {
    "document": "file",
    "photo": "photo.jpg",
    "voice": "voice.ogg",
    "audio": "audio",
    "video": "video.mp4",
}


def _file_of(message: dict[str, Any]) -> dict[str, Any] | None:
    """The file a message carries, with a name; a photo comes in sizes: the largest."""
    for kind, default in FILE_KINDS.items():
        found = message.get(kind)
        if isinstance(found, list):  # photo: [small, ..., large]
            found = found[-1] if found else None
        if isinstance(found, dict):
            return {**found, "file_name": found.get("file_name") or default}
    return None
