"""What every channel adapter speaks: a message as it came in, the service's connection
behind one interface, and what the gateway gives the channels (its inbox and live feed)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Inbound:
    channel: str  # the channel's name in the config
    chat: str  # where an answer goes: a direct conversation, or a group
    sender: str  # the service's id for who wrote it
    sender_name: str
    text: str
    message_id: str  # the service's id for it: a message seen twice is taken once
    direct: bool  # a direct message, not a group's
    mentioned: bool = False  # in a group: the bot was named
    files: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """A file that came with a message; it lands in the agent's workspace."""

    name: str  # as the sender named it (made safe before use)
    data: bytes


log = logging.getLogger("hermitcrab.channels")
BACKOFF_MAX_S = 60.0


class Link:
    """A service's connection as `channels list` shows it, and how long to wait before the
    next try after a failure (doubling, up to a minute; back to a second once it works)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "connecting"
        self.last_error: str | None = None
        self.backoff = 1.0

    def up(self) -> None:
        self.state, self.backoff = "connected", 1.0

    async def down(self, error: str) -> None:
        self.state, self.last_error = "reconnecting", error
        log.warning("channel %s: %s; trying again in %g s", self.name, error, self.backoff)
        await asyncio.sleep(self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_S)


class Service(Protocol):
    """One chat service's wire: messages in, text out."""

    name: str
    limit: int  # the longest message it takes, in characters

    def receive(self) -> AsyncIterator[Inbound]:
        """Messages as they come; reconnecting, with backoff, when the connection drops."""
        ...

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        """`in_reply_to`: the service's id of the message this answers, where it has one."""
        ...

    async def close(self) -> None: ...


class Door(Protocol):
    """The gateway's side, as a channel sees it."""

    async def submit(
        self,
        session_id: str,
        text: str,
        agent: str | None,
        source: str,
        source_id: str | None = None,
        **options: Any,
    ) -> Any: ...

    def listen(self, session_id: str) -> AbstractContextManager[Any]: ...

    async def decide(self, approval_id: str, allow: bool, always: bool, by: str) -> Any: ...

    async def save(self, agent: str, path: str, data: bytes) -> str | None:
        """Write a file into the agent's workspace, inside its sandbox as every write there is
        (its uid, its quota); returns what went wrong, or None."""
        ...


def split(text: str, limit: int) -> list[str]:
    """A long answer in pieces the service takes: at a paragraph, else a line, else a
    space, else wherever it must."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        for mark in ("\n\n", "\n", " "):  # the best place found in the piece's second half
            cut = rest.rfind(mark, 0, limit)
            if cut > limit // 2:
                break
        else:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces
