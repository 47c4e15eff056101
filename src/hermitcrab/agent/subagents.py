"""`spawn_agent`: hand a task to a sub-agent session with a narrower tool set and its own
step and token budgets; its final answer is the tool's result. It inherits the parent
turn's taint, and asking for tools this turn was not offered is an escalation the guard
holds for a person while the turn is tainted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from pydantic import Field

from hermitcrab.agent.turn import Agent, Services
from hermitcrab.store.sessions import MESSAGE, REPLY
from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult


class SpawnArgs(Args):
    task: str = Field(description="what the sub-agent must do and answer")
    tools: list[str] = Field(default_factory=list, description="tools it may use")
    max_steps: int = Field(8, ge=1, le=100)
    max_tokens: int = Field(20000, ge=100, le=10_000_000)


class SpawnAgentTool(Tool):
    name = "spawn_agent"
    description = "Give a task to a sub-agent with fewer tools; returns its answer."
    risk: Risk = "write"
    Args = SpawnArgs

    def __init__(self, services: Services, agent_for: Callable[[str], Agent]) -> None:
        self.services = services
        self.agent_for = agent_for

    def summary(self, args: SpawnArgs) -> str:
        return f"spawn_agent with tools {args.tools or 'none'}: {args.task[:160]}"

    def details(self, args: SpawnArgs) -> str:
        return args.task

    def escalates(self, args: SpawnArgs, offered: set[str]) -> bool:
        return any(name not in offered for name in args.tools)

    async def run(self, args: SpawnArgs, ctx: ToolContext) -> ToolResult:
        from hermitcrab.agent.loop import run_turn  # the loop offers this tool: import late

        parent = self.agent_for(ctx.agent)
        unknown = [n for n in args.tools if n not in parent.tools or n == self.name]
        if unknown:
            allowed = ", ".join(n for n in sorted(parent.tools) if n != self.name)
            return ToolResult(
                f"spawn_agent: no such tool for a sub-agent: {unknown}. choose from: {allowed}", error=True
            )
        child = dataclasses.replace(
            parent, config=parent.config.model_copy(update={"max_tool_steps": args.max_steps})
        )
        sessions = ctx.store.sessions
        session_id = f"{ctx.session_id[:96]}:sub{ctx.call_id}"
        await asyncio.to_thread(sessions.ensure_session, session_id, parent.name)
        message = await asyncio.to_thread(
            sessions.append,
            session_id,
            MESSAGE,
            {
                "role": "user",
                "text": args.task,
                "source": "spawn_agent",
                "parent": ctx.session_id,
                "tools": args.tools,
                "taint": list(ctx.taint),
                "token_budget": args.max_tokens,
                "approvals": "ask" if ctx.present else "deny",
            },
        )
        self.services.emit(message.to_json())
        answer = await run_turn(child, self.services, message, parent.config.tool_timeout_seconds)
        taint = ", ".join(answer.data.get("taint") or ()) or None
        if answer.kind != REPLY:
            return ToolResult(
                f"the sub-agent failed ({session_id}): {answer.data.get('error')}", error=True, taint=taint
            )
        return ToolResult(
            answer.data["text"] or "(the sub-agent answered nothing)",
            taint=taint,
            data={"session": session_id},
        )
