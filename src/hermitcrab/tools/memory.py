"""`memory_search` and `memory_write`: the agent's long-term memory, Markdown in its
workspace. Found lines come back with `file:line`; a note written in a tainted turn
taints a later turn that finds it (the file's mark, as for any file the agent writes)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from pydantic import Field

from hermitcrab.memory import Memory
from hermitcrab.memory.files import NOTES_FOLDER
from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult

MAX_NOTE_CHARS = 2000


class SearchArgs(Args):
    query: str = Field(description="what to recall, in plain words")
    limit: int = Field(5, ge=1, le=20)


class MemorySearchTool(Tool):
    name = "memory_search"
    description = "Search long-term memory (MEMORY.md and daily notes); lines come with file:line."
    risk: Risk = "read"
    Args = SearchArgs

    async def run(self, args: SearchArgs, ctx: ToolContext) -> ToolResult:
        memory = Memory(ctx.store.memory, ctx.agent, ctx.workspace)
        hits = await asyncio.to_thread(memory.search, args.query, args.limit)
        if not hits:
            return ToolResult(f"memory_search: nothing found for {args.query!r}")
        lines = [f"{h.where}: {h.text}" + (f"  (under: {h.heading})" if h.heading else "") for h in hits]
        # The dispatcher checks each file these came from, as it does a file the agent reads.
        return ToolResult("\n".join(lines), data={"read_paths": sorted({h.path for h in hits})})


class WriteArgs(Args):
    text: str = Field(description="what to remember, one or a few lines")


class MemoryWriteTool(Tool):
    name = "memory_write"
    description = "Remember something: add it to today's note in memory/."
    risk: Risk = "write"
    Args = WriteArgs

    def written_path(self, args: WriteArgs) -> str:
        return today_note()

    async def run(self, args: WriteArgs, ctx: ToolContext) -> ToolResult:
        if not " ".join(args.text.split()):
            return ToolResult("memory_write: nothing to remember", error=True)
        path = self.written_path(args)
        failure = await append_note(ctx, path, [args.text])
        if failure:
            return ToolResult(f"memory_write: could not write {path}: {failure}", error=True)
        return ToolResult(f"remembered in {path}")


async def append_note(ctx: ToolContext, path: str, texts: list[str]) -> str | None:
    """Append lines to a daily note, inside the sandbox as every write to the workspace is
    (its quota, its uid), and index it; returns what went wrong, or None."""
    stamp = time.strftime("%H:%M")
    lines = "".join(f"- {stamp} {' '.join(t.split())[:MAX_NOTE_CHARS]}\n" for t in texts if t.strip())
    script = 'mkdir -p "$(dirname "$1")" && cat >> "$1"'
    result = await ctx.runtime.exec(
        ctx.sandbox, ["sh", "-c", script, "sh", path], actor=ctx.actor, stdin=lines.encode()
    )
    if result.exit_code != 0:
        return result.stderr.decode(errors="replace")[:300] or f"exit {result.exit_code}"
    memory = Memory(ctx.store.memory, ctx.agent, ctx.workspace)
    await asyncio.to_thread(memory.index_file, path)
    return None


def today_note() -> str:
    return f"{NOTES_FOLDER}/{_today()}.md"


def _today() -> str:
    return datetime.now().strftime("%Y-%m-%d")
