"""Discord, through discord.py on the gateway WebSocket (the MESSAGE_CONTENT intent must be
on in the developer portal). discord.py keeps the connection: heartbeats, RESUME after a
drop (Discord then replays what was missed), reconnects with its own backoff; a fatal
error (a bad token, say) is retried here, with backoff, and said. The inbox takes a message
once (its id is the source id)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import discord
import yarl

from hermitcrab.channels.base import Attachment, Inbound, Link, split

if TYPE_CHECKING:
    from hermitcrab.config.schema import DiscordChannel

log = logging.getLogger("hermitcrab.channels")

LIMIT = 2000  # a message's content, in characters
MAX_FILE_BYTES = 20 * 1024 * 1024


class _Bot(discord.Client):
    """discord.py's client, telling the channel what happens to the connection."""

    def __init__(self, channel: Discord) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.dm_messages = intents.guild_messages = intents.message_content = True
        super().__init__(intents=intents)
        self.channel = channel

    async def on_ready(self) -> None:
        self.channel.link.up()
        self.channel.username = self.user.name if self.user else None

    async def on_resumed(self) -> None:
        self.channel.link.up()

    async def on_disconnect(self) -> None:
        self.channel.link.state = "reconnecting"
        self.channel.link.last_error = "the gateway connection dropped"

    async def on_message(self, message: discord.Message) -> None:
        await self.channel.messages.put(message)


class Discord:
    limit = LIMIT

    def __init__(self, name: str, config: DiscordChannel, token: str) -> None:
        self.name, self.config = name, config
        self._token = token
        self.link = Link(name)
        self.username: str | None = None
        self.messages: asyncio.Queue[discord.Message] = asyncio.Queue()
        self._bot: _Bot | None = None
        self._runner: asyncio.Task[None] | None = None
        self._dms: dict[str, str] = {}  # a person's id: their direct chat's id

    async def _run(self) -> None:
        """discord.py's connection, started again (with backoff) when it gives up."""
        # discord.py keeps its API and gateway addresses as class attributes (one per
        # process): the config's.
        discord.http.Route.BASE = self.config.api_url.rstrip("/")
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        while True:
            self._bot = _Bot(self)
            try:
                await self._bot.start(self._token, reconnect=True)
                return  # closed: the channel is stopping
            except Exception as exc:  # a bad token, intents not allowed, the API down
                detail = str(exc).replace(self._token, "<token>")
                await self._bot.close()
                await self.link.down(f"Discord: {type(exc).__name__}: {detail}")

    async def receive(self) -> AsyncIterator[Inbound]:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"discord {self.name}")
        while True:
            message = await self.messages.get()
            inbound = self._inbound(message)
            if inbound is not None:
                yield await self._with_files(message, inbound)

    def _inbound(self, message: discord.Message) -> Inbound | None:
        bot = self._bot.user if self._bot is not None else None
        if message.author.bot or (bot is not None and message.author.id == bot.id):
            return None
        if not message.content and not message.attachments:
            return None
        direct = isinstance(message.channel, discord.DMChannel)
        if direct:
            self._dms[str(message.author.id)] = str(message.channel.id)
        return Inbound(
            channel=self.name,
            chat=str(message.channel.id),
            sender=str(message.author.id),
            sender_name=message.author.name,
            text=message.content,
            message_id=str(message.id),
            direct=direct,
            mentioned=bot is not None and any(user.id == bot.id for user in message.mentions),
        )

    async def _with_files(self, message: discord.Message, inbound: Inbound) -> Inbound:
        files, notes = [], ""
        for attachment in message.attachments:
            try:
                if attachment.size > MAX_FILE_BYTES:
                    raise ValueError(f"{attachment.filename} is over {MAX_FILE_BYTES // 2**20} MB")
                files.append(Attachment(attachment.filename, await attachment.read()))
            except (discord.HTTPException, ValueError) as exc:
                notes += f"\n[a file came with this message but was not kept: {exc}]"
        return dataclasses.replace(inbound, text=inbound.text + notes, files=tuple(files))

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        bot = self._bot
        if bot is None or not bot.is_ready():
            raise RuntimeError("Discord: not connected")
        chat = self._dms.get(chat, chat)  # a person's id: their direct chat
        target: Any = bot.get_partial_messageable(int(chat))
        try:
            for piece in split(text, self.limit):
                await target.send(piece)
        except discord.NotFound:
            if chat in self._dms.values():
                raise RuntimeError(f"Discord: channel {chat} not found") from None
            dm = await bot.create_dm(discord.Object(int(chat)))  # not a channel: a person
            for piece in split(text, self.limit):
                await dm.send(piece)
        except discord.HTTPException as exc:
            raise RuntimeError(f"Discord: {exc}") from None

    async def close(self) -> None:
        if self._bot is not None:
            with contextlib.suppress(Exception):
                await self._bot.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
