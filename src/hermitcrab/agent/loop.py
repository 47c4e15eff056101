"""One turn: from an inbound message event to a committed reply event.

Every step is an event in the session's log, committed before it is shown: the turn
start, the reply, or the failure. Token deltas are live only (they are re-derivable
from the reply) and go to `emit` without touching the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hermitcrab.agent.context import Persona, build_messages
from hermitcrab.config.schema import AgentConfig
from hermitcrab.errors import HermitCrabError
from hermitcrab.inference.base import ChatRequest, Provider
from hermitcrab.store.sessions import REPLY, TURN_FAILED, TURN_STARTED, Event, SessionStore

log = logging.getLogger("hermitcrab.agent")

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Agent:
    name: str
    config: AgentConfig
    provider: Provider
    persona: Persona


async def run_turn(
    agent: Agent, store: SessionStore, message: Event, emit: Emit, timeout_seconds: float
) -> Event:
    """Answer `message`; return the committed reply or turn.failed event."""
    session_id = message.session_id
    started = await asyncio.to_thread(
        store.append, session_id, TURN_STARTED, {"agent": agent.name}, message.id
    )
    emit(started.to_json())
    clock = time.perf_counter()
    exchanges = await asyncio.to_thread(
        store.conversation, session_id, message.id, agent.config.max_history_messages // 2
    )
    request = ChatRequest(build_messages(agent.persona.system_prompt(), exchanges, message))
    parts: list[str] = []
    usage: dict[str, int] = {}
    finish: str | None = None
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in agent.provider.stream(request):
                if chunk.text:
                    parts.append(chunk.text)
                    emit(
                        {
                            "id": None,
                            "session_id": session_id,
                            "kind": "token",
                            "reply_to": message.id,
                            "data": {"text": chunk.text},
                        }
                    )
                finish = chunk.finish_reason or finish
                usage = chunk.usage or usage
        kind, data = (
            REPLY,
            {
                "text": "".join(parts).strip(),
                "model": agent.config.model,
                "finish_reason": finish,
                "usage": usage,
            },
        )
    except TimeoutError:
        kind, data = (
            TURN_FAILED,
            {
                "error": f"the model did not finish within {timeout_seconds:g} s "
                "(gateway.turn_timeout_seconds)",
                "partial": "".join(parts),
            },
        )
    except HermitCrabError as exc:
        kind, data = TURN_FAILED, {"error": str(exc), "partial": "".join(parts)}
    except Exception as exc:  # a bug must fail this turn, not leave it unanswered forever
        log.exception("turn for message %s in session %s crashed", message.id, session_id)
        kind, data = (
            TURN_FAILED,
            {
                "error": f"internal error: {type(exc).__name__}: {exc}",
                "partial": "".join(parts),
            },
        )
    data["duration_ms"] = round((time.perf_counter() - clock) * 1000, 1)
    answer = await asyncio.to_thread(store.append, session_id, kind, data, message.id)
    emit(answer.to_json())
    return answer
