"""MCP servers' tools, offered to the agents.

Each configured stdio server runs inside each agent's sandbox that it is offered to,
started once the sandbox runtime is up and kept running; its tools become the agent's as
`SERVER__tool`. What a server says is untrusted: its results taint the turn, its tool
descriptions are cut to one line, and its annotations only ever lower a tool's standing
as far as the policy lets them (the policy still names which tools run at all).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from hermitcrab.inference.base import ToolSpec
from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult
from hermitcrab.tools.mcp.arguments import elicited
from hermitcrab.tools.mcp.transport import ServerOutput

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    import mcp_types as types

    from hermitcrab.config.schema import McpServerConfig

# How a server is reached: a transport (the SDK's read and write streams), given where its
# output goes (a stdio server's stderr and exit, for a clear error).
Connect = Callable[[ServerOutput], "AbstractAsyncContextManager[Any]"]
# The agent's model for a server's sampling request: (agent, system prompt, [(role, text)],
# max tokens) -> the answer's text. The gateway lends it.
Sampler = Callable[[str, str | None, list[tuple[str, str]], int], Awaitable[str]]

log = logging.getLogger("hermitcrab.mcp")

FULL_SCHEMAS_UP_TO = 8  # a server with more tools sends schemas when the model asks
DESCRIPTION_CHARS = 160
RESULT_CHARS = 50_000
RETRY_AFTER_S = 30.0  # a failed server is started again on a turn this long after
TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


def risk_of(tool: types.Tool, override: Risk | None) -> Risk:
    """MCP's annotations, read as the issue of trust they are: read-only is read; a
    destructive tool is exec-level (held when the turn is tainted); one that reaches the
    open world is network; anything else acts on the world outside: external."""
    if override is not None:
        return override
    notes = tool.annotations
    if notes is not None and notes.read_only_hint:
        return "read"
    if notes is not None and notes.destructive_hint:
        return "exec"
    if notes is not None and notes.open_world_hint:
        return "network"
    return "external"


def tool_name(server: str, name: str) -> str:
    return f"{server}__{TOOL_NAME.sub('_', name)}"[:64]


class McpArgs(Args):
    """Whatever the server's schema asks for: the server checks its own arguments."""

    model_config = ConfigDict(extra="allow")


class McpTool(Tool):
    Args = McpArgs

    def __init__(self, server: McpServer, tool: types.Tool, risk: Risk, full_schema: bool) -> None:
        self.server = server
        self.remote = tool.name
        self.name = tool_name(server.name, tool.name)  # type: ignore[misc]
        line = " ".join((tool.description or tool.name).split())[:DESCRIPTION_CHARS]
        self.description = line  # type: ignore[misc]
        self.risk = risk  # type: ignore[misc]
        self.schema = dict(tool.input_schema or {"type": "object"})
        self.compact = not full_schema
        # A big server's tools go without their schemas (mcp_schema gives one): tokens saved.
        self._offered = self.schema if full_schema else {"type": "object"}

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self._offered)

    async def run(self, args: McpArgs, ctx: ToolContext) -> ToolResult:
        self.server.active.append(ctx)  # whom the server's questions during this call are for
        try:
            result = await self.server.call(self.remote, args.model_dump(), ctx.progress)
        except McpUnavailable as exc:
            return ToolResult(f"{self.name}: {exc}", error=True)
        except TimeoutError:
            limit = self.server.spec.timeout_seconds
            return ToolResult(f"{self.name}: no answer within {limit:g} s (mcp.servers.{self.server.name}"
                              ".timeout_seconds)", error=True)  # fmt: skip
        finally:
            self.server.active.remove(ctx)
        text = render(result)[:RESULT_CHARS]
        if result.is_error and self.compact:  # the guidance lives in the error, not the prompt
            text += f"\n(its arguments: call mcp_schema with tool={self.name})"
        taint = f"MCP server {self.server.name} (tool {self.remote})"
        return ToolResult(text, error=result.is_error, taint=taint)


class SchemaArgs(Args):
    tool: str = Field(description="an MCP tool's name, as offered (SERVER__tool)")


class McpSchemaTool(Tool):
    name = "mcp_schema"
    description = "The arguments of an MCP tool offered without them: call before using one."
    risk: Risk = "read"
    Args = SchemaArgs

    def __init__(self, tools: Callable[[], dict[str, McpTool]]) -> None:
        self._tools = tools

    async def run(self, args: SchemaArgs, ctx: ToolContext) -> ToolResult:
        tool = self._tools().get(args.tool)
        if tool is None:
            return ToolResult(f"mcp_schema: no MCP tool named {args.tool!r}", error=True)
        return ToolResult(json.dumps(tool.schema, ensure_ascii=False), taint=f"MCP server {tool.server.name}")


def _sampled_text(content: Any) -> str:
    blocks = content if isinstance(content, list) else [content]
    return " ".join(getattr(b, "text", None) or f"[{getattr(b, 'type', 'content')}]" for b in blocks)


def render(result: types.CallToolResult) -> str:
    parts = []
    for block in result.content:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        elif getattr(block, "type", "") == "resource":
            resource = getattr(block, "resource", None)
            parts.append(getattr(resource, "text", None) or f"[resource {getattr(resource, 'uri', '')}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class McpUnavailable(Exception):
    pass


class McpServer:
    """One server for one agent, in that agent's sandbox."""

    def __init__(
        self, name: str, spec: McpServerConfig, agent: str, connect: Connect, sampler: Sampler | None = None
    ) -> None:
        self.name, self.spec, self.agent = name, spec, agent
        self._connect = connect
        self._sampler = sampler
        self.active: list[ToolContext] = []  # the calls in flight, latest last
        self.state = "stopped"
        self.error: str | None = None
        self.server_info = ""
        self.tools: dict[str, McpTool] = {}
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._started_at = 0.0

    def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._ready, self._stop = asyncio.Event(), asyncio.Event()
        self.state, self.error, self._started_at = "starting", None, time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"mcp {self.agent}/{self.name}")

    def retry_due(self) -> bool:
        return self.state == "failed" and time.monotonic() - self._started_at > RETRY_AFTER_S

    async def wait_ready(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass

    async def _run(self) -> None:
        import mcp_types as types
        from mcp.client import Client

        output = ServerOutput()

        async def roots(context: Any) -> types.ListRootsResult:
            return types.ListRootsResult(roots=[types.Root(uri="file:///workspace", name="workspace")])

        try:
            async with Client(
                self._connect(output),
                elicitation_callback=self._elicit,
                sampling_callback=self._sample,
                list_roots_callback=roots,
                read_timeout_seconds=self.spec.timeout_seconds,
                client_info=types.Implementation(name="hermitcrab", version=_version()),
            ) as client:
                info = client.server_info
                self.server_info = f"{info.name} {info.version}" if info is not None else ""
                self.tools = self._offered(await _all_tools(client))
                self._client = client
                self.state = "ready"
                log.info("MCP server ready", extra={"server": self.name, "agent": self.agent,
                                                    "tools": len(self.tools)})  # fmt: skip
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:
            self.state = "failed"
            self.error = f"{cause_of(exc)}; {output.describe()}"
            log.error("MCP server %s failed for agent %s: %s", self.name, self.agent, self.error)
        finally:
            self._client = None
            self.tools = {} if self.state == "failed" else self.tools
            if self.state != "failed":
                self.state = "stopped"
            self._ready.set()

    async def _ask_person(self, what: str, summary: str, details: dict[str, Any]) -> bool:
        """Hold the server's question for the person of the call in flight; False at once
        when no call is, or no person is present to answer."""
        ctx = self.active[-1] if self.active else None
        if ctx is None or ctx.approvals is None or not ctx.present:
            return False
        subject = {
            "tool": f"{self.name}__{what}", "summary": summary, "arguments": details, "risk": "external",
            "why": f"the MCP server {self.name} asks the person", "agent": self.agent,
        }  # fmt: skip
        timeout = ctx.runtime.get(ctx.sandbox).policy.tools.approval_timeout_seconds
        approval = ctx.approvals.open("tool", ctx.sandbox, subject, timeout, session_id=ctx.session_id)
        approval = await ctx.approvals.wait(approval, present=True)
        return approval.state == "approved"

    async def _elicit(self, context: Any, params: Any) -> types.ElicitResult:
        """A form the server wants filled: its defaults, if the person says yes. A field
        with no default, or a URL to visit, is declined: nothing here fills in a form."""
        import mcp_types as types

        if isinstance(params, types.ElicitRequestURLParams):
            return types.ElicitResult(action="decline")
        answer = elicited(params.requested_schema)
        if answer is None:
            return types.ElicitResult(action="decline")
        summary = f"MCP server {self.name} asks: {params.message[:300]} (answer: {json.dumps(answer)[:300]})"
        if await self._ask_person("elicitation", summary, answer):
            return types.ElicitResult(action="accept", content=answer)
        return types.ElicitResult(action="decline")

    async def _sample(self, context: Any, params: Any) -> types.CreateMessageResult | types.ErrorData:
        """The server wants the agent's model to answer something: if the person says yes,
        through the agent's own model route (its queue, usage and spend cap)."""
        import mcp_types as types

        messages = [(m.role, _sampled_text(m.content)) for m in params.messages]
        shown = " | ".join(f"{role}: {text[:200]}" for role, text in messages)[:600]
        summary = f"MCP server {self.name} wants the model to answer: {shown}"
        if self._sampler is None or not await self._ask_person("sampling", summary, {"messages": shown}):
            return types.ErrorData(code=types.INVALID_REQUEST, message="the person did not allow it")
        text = await self._sampler(self.agent, params.system_prompt, messages, min(params.max_tokens, 2048))
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=text), model=self.agent,
            stop_reason="endTurn",
        )  # fmt: skip

    def _offered(self, listed: list[types.Tool]) -> dict[str, McpTool]:
        allow, deny = self.spec.tools.allow, set(self.spec.tools.deny)
        chosen = [t for t in listed if (allow is None or t.name in allow) and t.name not in deny]
        full = len(chosen) <= FULL_SCHEMAS_UP_TO
        tools = {}
        for tool in chosen:
            made = McpTool(self, tool, risk_of(tool, self.spec.risk), full)
            tools[made.name] = made
        return tools

    async def call(
        self, name: str, arguments: dict[str, Any], progress: Callable[[dict[str, Any]], None] | None = None
    ) -> types.CallToolResult:
        """A tool call; the server's progress notifications go to `progress`. Past the
        timeout the call is abandoned, and the SDK tells the server so (notifications/cancelled)."""
        client = self._client
        if client is None:
            raise McpUnavailable(
                f"the MCP server {self.name} is {self.state}" + (f": {self.error}" if self.error else "")
            )

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            seen = {"server": self.name, "tool": name, "progress": done, "total": total}
            log.debug("MCP progress", extra=seen)  # (a log record's own `message` is not ours to set)
            if progress is not None:
                progress({**seen, "message": message})

        call = client.call_tool(name, arguments, progress_callback=on_progress)
        return await asyncio.wait_for(call, self.spec.timeout_seconds)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "agent": self.agent,
            "state": self.state,
            "error": self.error,
            "server_info": self.server_info,
            "tools": [
                {"name": t.name, "risk": t.risk, "description": t.description} for t in self.tools.values()
            ],
        }


async def _all_tools(client: Any) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor = None
    for _ in range(100):  # a server that pages forever is not followed forever
        page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def cause_of(exc: BaseException) -> str:
    """The innermost cause of an exception group (anyio wraps a transport's fault in one)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _version() -> str:
    from hermitcrab import __version__

    return __version__
