"""Telegram, through python-telegram-bot on the Bot API (long polling: no public address
needed). Updates are confirmed by the next poll's offset, so what arrived while the gateway
was down, or was cut off mid-poll, comes again; the inbox takes a message once (its id is
the source id)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from telegram import Bot, Message, Update
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from hermitcrab.channels.base import Attachment, Inbound, Link, split

if TYPE_CHECKING:
    from hermitcrab.config.schema import TelegramChannel

log = logging.getLogger("hermitcrab.channels")

LIMIT = 4096  # sendMessage's text, in characters
MAX_FILE_BYTES = 20 * 1024 * 1024  # what the Bot API lets a bot download
# What a message may carry, and the name a file gets when Telegram gives none.
FILE_KINDS = {
    "document": "file",
    "photo": "photo.jpg",
    "voice": "voice.ogg",
    "audio": "audio",
    "video": "video.mp4",
}


class Telegram:
    limit = LIMIT

    def __init__(self, name: str, config: TelegramChannel, token: str) -> None:
        self.name, self.config = name, config
        self._token = token
        api = config.api_url.rstrip("/")
        wait = config.poll_seconds + 15
        self._bot = Bot(
            token,
            base_url=f"{api}/bot",
            base_file_url=f"{api}/file/bot",
            request=HTTPXRequest(connection_pool_size=4, read_timeout=30.0),
            get_updates_request=HTTPXRequest(read_timeout=float(wait)),
        )
        self._offset = 0
        self.username: str | None = None
        self.link = Link(name)

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "<token>")  # the token is in every URL: never in a log

    async def receive(self) -> AsyncIterator[Inbound]:
        while True:
            try:
                if self.username is None:
                    await self._bot.initialize()  # getMe
                    self.username = self._bot.username
                updates = await self._bot.get_updates(
                    offset=self._offset, timeout=self.config.poll_seconds, allowed_updates=["message"]
                )
            except TelegramError as exc:
                await self.link.down(self._clean(f"{type(exc).__name__}: {exc}"))
                continue
            self.link.up()
            for update in updates:
                self._offset = max(self._offset, update.update_id + 1)
                inbound = self._inbound(update)
                if inbound is not None:
                    assert update.message is not None
                    yield await self._with_file(update.message, inbound)

    def _inbound(self, update: Update) -> Inbound | None:
        message = update.message
        if message is None:
            return None
        text = message.text or message.caption or ""
        if not text and _file_of(message) is None:
            return None  # a sticker, a location, an edit: not taken
        sender = message.from_user
        if sender is None or sender.is_bot:
            return None
        mention = f"@{self.username}".lower() if self.username else None
        return Inbound(
            channel=self.name,
            chat=str(message.chat.id),
            sender=str(sender.id),
            sender_name=sender.username or sender.first_name or str(sender.id),
            text=text,
            message_id=str(message.message_id),
            direct=message.chat.type == "private",
            mentioned=bool(mention and mention in text.lower()),
        )

    async def _with_file(self, message: Message, inbound: Inbound) -> Inbound:
        """The message with its file (a document, photo, voice note, audio or video)
        downloaded. One too big or not fetched is said in the text instead."""
        found = _file_of(message)
        if found is None:
            return inbound
        name, media = found
        try:
            if int(getattr(media, "file_size", 0) or 0) > MAX_FILE_BYTES:
                raise ValueError(f"{name} is over {MAX_FILE_BYTES // 2**20} MB")
            file = await self._bot.get_file(media.file_id)
            data = bytes(await file.download_as_bytearray())
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"{name} is over {MAX_FILE_BYTES // 2**20} MB")
        except (TelegramError, ValueError) as exc:
            note = f"\n[a file came with this message but was not kept: {self._clean(str(exc))}]"
            return dataclasses.replace(inbound, text=inbound.text + note)
        return dataclasses.replace(inbound, files=(Attachment(name, data),))

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        for piece in split(text, self.limit):
            try:
                await self._bot.send_message(chat_id=chat, text=piece)
            except TelegramError as exc:
                raise RuntimeError(self._clean(f"{type(exc).__name__}: {exc}")) from None

    async def close(self) -> None:
        if self.username is not None:
            await self._bot.shutdown()


def _file_of(message: Message) -> tuple[str, Any] | None:
    """The file a message carries, with a name; a photo comes in sizes: the largest."""
    for kind, default in FILE_KINDS.items():
        media: Any = getattr(message, kind, None)
        if isinstance(media, tuple | list):
            media = media[-1] if media else None
        if media is not None:
            return str(getattr(media, "file_name", None) or default), media
    return None
