"""What one turn carries: its agent, session, store, taint, the tools it offers, and the
way to its agent's sandbox (created on first tool use, then kept warm)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermitcrab.agent.context import Persona
from hermitcrab.config.schema import AgentConfig
from hermitcrab.errors import SandboxError
from hermitcrab.inference.base import Provider
from hermitcrab.store.sessions import AGENT_MESSAGE, Event

if TYPE_CHECKING:
    from hermitcrab.agent.guard import Taint
    from hermitcrab.approvals import Approvals
    from hermitcrab.runtime import SandboxRuntime
    from hermitcrab.store import Store
    from hermitcrab.tools.base import Tool

Emit = Callable[[dict[str, Any]], None]


@dataclass
class Agent:
    name: str
    config: AgentConfig
    provider: Provider
    persona: Persona
    # What it offers the model, built on first use: the tools' modules are not loaded
    # before the gateway answers.
    toolbox: Callable[[], dict[str, Tool]] = dict
    # Tools that come and go (an MCP server's, once it runs): asked for at each turn.
    extra_tools: Callable[[], dict[str, Tool]] | None = None

    @functools.cached_property
    def tools(self) -> dict[str, Tool]:
        return self.toolbox()

    @property
    def workspace(self) -> Path:
        return self.persona.workspace

    @property
    def sandbox(self) -> str:
        return sandbox_name(self.name)


def sandbox_name(agent: str) -> str:
    """The sandbox an agent's tools run in: one per agent."""
    slug = re.sub(r"[^a-z0-9_-]", "-", agent.lower()).strip("-_") or "agent"
    return f"agent-{slug}"[:63]


@dataclass
class Services:
    """What the gateway lends every turn; built once by the gateway's parts."""

    store: Store
    emit: Emit
    runtime: Callable[[], Awaitable[SandboxRuntime]] | None = None
    approvals: Callable[[], Approvals | None] = lambda: None
    # Awaited at the start of each turn, with the agent's name (its MCP servers come up).
    before_turn: Callable[[str], Awaitable[None]] | None = None


@dataclass
class Turn:
    agent: Agent
    services: Services
    message: Event
    tools: dict[str, Tool]
    taint: Taint
    present: bool  # a person can answer an approval now; else held calls are denied at once
    runtime: SandboxRuntime | None = None

    @property
    def session_id(self) -> str:
        return self.message.session_id

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def sandbox(self) -> str:
        return self.agent.sandbox

    @property
    def actor(self) -> str:
        return f"agent:{self.agent.name}"

    @property
    def approvals(self) -> Approvals | None:
        return self.services.approvals()

    async def append(self, kind: str, data: dict[str, Any]) -> Event:
        """Commit an event of this turn, then show it: durable before visible."""
        event = await self.store.aio.sessions.append(self.session_id, kind, data, self.message.id)
        self.services.emit(event.to_json())
        return event

    def live(self, kind: str, data: dict[str, Any]) -> None:
        """Show something that is not an event of the log (a token, a tool-call delta): it is
        re-derivable from the model.response that follows."""
        self.services.emit(
            {
                "id": None,
                "session_id": self.session_id,
                "kind": kind,
                "reply_to": self.message.id,
                "data": data,
            }
        )

    async def post(self, text: str) -> None:
        await self.append(AGENT_MESSAGE, {"text": text})

    async def sandbox_runtime(self) -> SandboxRuntime:
        if self.runtime is None:
            if self.services.runtime is None:
                raise SandboxError("this gateway runs no sandboxes, so no tool can run")
            runtime = await self.services.runtime()
            await runtime.ensure(self.sandbox, workspace=self.agent.workspace, agent=self.agent.name)
            self.runtime = runtime
        return self.runtime
