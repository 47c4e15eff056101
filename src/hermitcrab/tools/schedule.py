"""`schedule`: record a durable job (once at a time, or on a cron schedule) that will
send its text to this agent as a new turn. The scheduler runs them; this only records.
A job recorded in a tainted turn is marked so, and its turns start tainted."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from pydantic import Field, model_validator

from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult


class ScheduleArgs(Args):
    text: str = Field(description="what the agent will be told then")
    at: str | None = Field(None, description="ISO time, once")
    cron: str | None = Field(None, description="5-field cron, repeating")

    @model_validator(mode="after")
    def _one_time(self) -> ScheduleArgs:
        if (self.at is None) == (self.cron is None):
            raise ValueError("give exactly one of 'at' (an ISO time, once) or 'cron' (repeating)")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"'cron' {self.cron!r} is not a valid 5-field cron expression")
        if self.at is not None:
            try:
                datetime.fromisoformat(self.at)
            except ValueError:
                raise ValueError(f"'at' {self.at!r} is not an ISO time such as 2026-12-01T09:00") from None
        return self


class ScheduleTool(Tool):
    name = "schedule"
    description = "Schedule a message to yourself, once (at) or repeating (cron)."
    risk: Risk = "exec"  # it makes the agent act later, unattended
    Args = ScheduleArgs

    def summary(self, args: ScheduleArgs) -> str:
        return f"schedule: {args.text[:120]!r} " + (f"at {args.at}" if args.at else f"cron {args.cron}")

    async def run(self, args: ScheduleArgs, ctx: ToolContext) -> ToolResult:
        run_at = None
        if args.at is not None:
            when = datetime.fromisoformat(args.at)
            run_at = when.timestamp()  # a naive time is the gateway's local time
            if run_at < time.time():
                return ToolResult(f"schedule: {args.at} is in the past", error=True)
        job = await asyncio.to_thread(
            ctx.store.jobs.add,
            ctx.agent,
            ctx.session_id,
            args.text,
            run_at=run_at,
            cron=args.cron,
            tainted=ctx.tainted,
            created_by=ctx.actor,
        )
        when_text = f"at {args.at}" if args.at else f"on cron {args.cron}"
        return ToolResult(f"scheduled job {job.id} {when_text}", data=job.to_json())
