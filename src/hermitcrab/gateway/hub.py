"""Fan events out to live listeners (WebSockets), per session. Nothing durable lives here."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Event = dict[str, Any]


class Hub:
    def __init__(self, queue_size: int = 10000) -> None:
        self._listeners: dict[str, set[asyncio.Queue[Event | None]]] = defaultdict(set)
        self._queue_size = queue_size

    def publish(self, event: Event) -> None:
        for queue in list(self._listeners.get(event["session_id"], ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A listener this far behind is gone or stuck; it can reconnect with ?after=.
                self._listeners[event["session_id"]].discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # tells the listener it was dropped

    def listened(self, session_id: str) -> bool:
        return bool(self._listeners.get(session_id))

    @contextmanager
    def listen(self, session_id: str) -> Iterator[asyncio.Queue[Event | None]]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self._queue_size)
        self._listeners[session_id].add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(session_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[session_id]
