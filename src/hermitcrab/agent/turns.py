"""Run turns: one at a time per session, in arrival order; messages that arrive mid-turn wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar

from hermitcrab.agent.turn import Agent, Services
from hermitcrab.inference.queue import BACKGROUND, CALL_PARTY, CALL_PRIORITY, CALL_SESSION, INTERACTIVE
from hermitcrab.store.sessions import Event

log = logging.getLogger("hermitcrab.turns")

# The agent whose turn runs in this context: the gateway's log names it on every line.
TURN_AGENT: ContextVar[str | None] = ContextVar("turn_agent", default=None)


class TurnRunner:
    def __init__(
        self, services: Services, agent_for: Callable[[str, str | None], Agent], timeout_seconds: float
    ) -> None:
        self._services = services
        self._agent_for = agent_for
        self._timeout = timeout_seconds
        self._queues: dict[str, asyncio.Queue[tuple[Event, bool]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def enqueue(self, message: Event, agent_name: str, fresh: bool = False) -> None:
        """Queue the turn for `message`; `fresh`: it was committed just now, so no earlier
        run of its turn left events to resume from (the store need not be asked)."""
        queue = self._queues.setdefault(message.session_id, asyncio.Queue())
        queue.put_nowait((message, fresh))
        if message.session_id not in self._workers:
            task = asyncio.create_task(self._work(message.session_id, agent_name))
            self._workers[message.session_id] = task

    def busy(self) -> int:
        return len(self._workers)

    async def _work(self, session_id: str, agent_name: str) -> None:
        queue = self._queues[session_id]
        try:
            while not queue.empty():
                message, fresh = queue.get_nowait()
                try:
                    CALL_SESSION.set(session_id)
                    TURN_AGENT.set(agent_name)
                    CALL_PARTY.set(session_id)  # fair turns at the model queue are per session
                    # A scheduled job or heartbeat waits behind a person at the model.
                    background = message.data.get("priority") == "background"
                    CALL_PRIORITY.set(BACKGROUND if background else INTERACTIVE)
                    agent = self._agent_for(agent_name, message.data.get("model"))
                    from hermitcrab.agent.loop import run_turn  # loaded with the first turn

                    answer = await run_turn(agent, self._services, message, self._timeout, fresh)
                except Exception:  # the next message must still get its turn
                    log.exception("turn crashed", extra={"session": session_id, "message_id": message.id})
                    continue
                log.info(
                    "turn done",
                    extra={"session": session_id, "message_id": message.id, "outcome": answer.kind},
                )
        finally:
            # Nothing awaits between the empty check and here, so no message can be stranded.
            del self._workers[session_id]
            if queue.empty():
                del self._queues[session_id]

    async def stop(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
