"""The agent as an MCP server, for other MCP clients (editors, desktop assistants): the
gateway's `/mcp` (streamable HTTP, behind the gateway's bearer token like every route),
and `hermitcrab mcp serve` (stdio), which relays to it.

Its tools: send a message to a session and get the reply; list sessions; read the audit
log; list pending approvals and answer one. Built on the official SDK, on the first
request: a gateway nobody reaches over MCP loads none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Literal

from hermitcrab import __version__
from hermitcrab.gateway.answers import answer_to
from hermitcrab.store.sessions import TOOL_CALL

if TYPE_CHECKING:
    from hermitcrab.gateway.service import Gateway

REPLY_TIMEOUT_S = 300.0


def build_server(gw: Gateway) -> Any:
    import mcp_types as types
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server: Any = MCPServer(
        name="hermitcrab",
        version=__version__,
        instructions="A personal AI agent. send_message talks to it; the rest watches over it.",
    )
    read_only = types.ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    async def send_message(
        text: str,
        ctx: Context,
        session: str = "mcp",
        agent: str | None = None,
        timeout_seconds: float = REPLY_TIMEOUT_S,
    ) -> str:
        """Send a message to the agent in a session and wait for its reply (each tool call
        it makes meanwhile comes as a progress notification, where the client asked for them)."""
        if agent is not None and agent not in gw.agents:
            raise ToolError(f"no agent named '{agent}'; known: {', '.join(gw.agents)}")
        steps = 0

        async def progress(event: dict[str, Any]) -> None:
            nonlocal steps
            if event["kind"] == TOOL_CALL:
                steps += 1
                await ctx.report_progress(steps, None, f"calling {event['data'].get('name')}")

        with gw.hub.listen(session) as queue:
            event = await gw.submit(session, text, agent, source="mcp")
            try:
                async with asyncio.timeout(min(max(timeout_seconds, 1.0), 3600.0)):
                    answer = await answer_to(gw, queue, session, event.id, progress)
            except TimeoutError:
                raise ToolError(
                    f"no reply within {timeout_seconds:g} s; the turn goes on (session {session})"
                ) from None
        if answer["kind"] != "reply":
            raise ToolError(f"the turn failed: {answer['data'].get('error')}")
        return str(answer["data"].get("text", ""))

    # The SDK finds the context parameter by its type, resolved in this module's globals,
    # where Context (imported on the first request, not at start) is not.
    send_message.__annotations__["ctx"] = Context
    server.tool(annotations=types.ToolAnnotations(readOnlyHint=False, destructiveHint=False))(send_message)

    @server.tool(annotations=read_only)
    async def list_sessions() -> list[dict[str, Any]]:
        """The sessions, newest first."""
        assert gw.db is not None
        return [s.to_json() for s in await gw.db.aio.sessions.list_sessions()]

    @server.tool(annotations=read_only)
    async def read_audit(limit: int = 50, sandbox: str | None = None) -> list[dict[str, Any]]:
        """The audit log's newest entries: commands, network decisions, approvals, policy changes."""
        assert gw.db is not None
        entries = await gw.db.aio.audit.entries(sandbox=sandbox, limit=max(1, min(limit, 1000)))
        return [e.to_json() for e in entries]

    @server.tool(annotations=read_only)
    async def list_approvals() -> list[dict[str, Any]]:
        """What waits for a person's decision: tool calls and network requests."""
        await gw.sandbox_runtime()
        assert gw.approvals is not None
        return [a.to_json() for a in gw.approvals.pending()]

    @server.tool(annotations=types.ToolAnnotations(readOnlyHint=False, destructiveHint=True))
    async def answer_approval(
        approval_id: str, decision: Literal["once", "always", "deny"]
    ) -> dict[str, Any]:
        """Decide a held request: once, always (adds it to the policy), or deny."""
        from hermitcrab.approvals import ApprovalError
        from hermitcrab.errors import PolicyError

        await gw.sandbox_runtime()
        assert gw.approvals is not None
        try:
            approval = gw.approvals.decide(approval_id, decision != "deny", decision == "always", "mcp")
        except (ApprovalError, PolicyError) as exc:
            raise ToolError(str(exc)) from None
        return approval.to_json()

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        # Accepted for clients of the 2025 revisions; this server sends no log messages.
        return types.EmptyResult()

    server._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    return server


class McpEndpoint:
    """`/mcp`: the SDK's streamable HTTP session manager, started on the first request in
    a task of its own and stopped with the gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._manager: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        manager = await self._started()
        await manager.handle_request(scope, receive, send)

    async def _started(self) -> Any:
        async with self._lock:
            if self._manager is None:
                from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
                from mcp.server.transport_security import TransportSecuritySettings

                host = self.gw.config.gateway.local_host
                hosts = sorted({host, "127.0.0.1", "localhost"})
                security = TransportSecuritySettings(
                    enable_dns_rebinding_protection=True,  # a web page must not reach it through the browser
                    allowed_hosts=[f"{h}:*" for h in hosts],
                    allowed_origins=[f"http://{h}:*" for h in hosts],
                )
                manager = StreamableHTTPSessionManager(
                    app=build_server(self.gw)._lowlevel_server, security_settings=security
                )
                ready = asyncio.Event()

                async def run() -> None:
                    async with manager.run():
                        ready.set()
                        await self._stop.wait()

                self._task = asyncio.create_task(run(), name="mcp endpoint")
                await ready.wait()
                self._manager = manager
        return self._manager

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
