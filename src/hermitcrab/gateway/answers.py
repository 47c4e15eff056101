"""Waiting for a turn's answer, for a caller that sent a message and holds the line open
(an MCP client's send_message, an OpenAI client running an agent turn)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hermitcrab.store.sessions import ANSWERS

if TYPE_CHECKING:
    from hermitcrab.gateway.service import Gateway

Seen = Callable[[dict[str, Any]], Awaitable[None]]


async def answer_to(
    gw: Gateway, queue: asyncio.Queue[Any], session: str, message_id: int, seen: Seen | None = None
) -> dict[str, Any]:
    """The reply (or failure) to `message_id`, from the live feed (`queue`, listened to
    before the message was sent), or from the store if the feed dropped it; the turn's
    other events, live ones included, go to `seen` as they come."""
    assert gw.db is not None
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), 5.0)
        except TimeoutError:
            event = None
        if event is not None and event.get("reply_to") == message_id:
            if event["kind"] in ANSWERS:
                return event
            if seen is not None:
                await seen(event)
        if event is None:  # dropped, or quiet for a while: the store has the truth
            for stored in await gw.db.aio.sessions.events(session, message_id):
                if stored.reply_to == message_id and stored.kind in ANSWERS:
                    return stored.to_json()
