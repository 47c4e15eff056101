"""Every agent's MCP servers: started in its sandbox once the runtime is up, their tools
merged into what the agent offers, waited for briefly at a turn's start, stopped on `down`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hermitcrab.tools.mcp.servers import Connect, McpSchemaTool, McpServer, McpTool, Sampler

if TYPE_CHECKING:
    from hermitcrab.config.schema import McpServerConfig
    from hermitcrab.tools.base import Tool

# Given a server's name and settings, how to reach it (stdio in the sandbox, or HTTP
# through the sandbox's egress door): the gateway decides, knowing its runtime.
Connector = Callable[[str, "McpServerConfig"], Connect]
SETTLE_SECONDS = 20.0  # the longest a turn waits for its agent's servers to come up


class McpHub:
    def __init__(self, servers: dict[str, McpServerConfig], sampler: Sampler | None = None) -> None:
        self.configs = servers
        self.sampler = sampler
        self.servers: dict[str, dict[str, McpServer]] = {}  # agent -> server name -> server
        self._begun: dict[str, asyncio.Event] = {}  # agent -> its servers have been started
        self._schema_tools: dict[str, McpSchemaTool] = {}  # one each: its spec is built once

    def wanted(self, agent: str) -> dict[str, McpServerConfig]:
        return {n: s for n, s in self.configs.items() if s.agents is None or agent in s.agents}

    def start(self, agent: str, connector: Connector) -> None:
        mine = self.servers.setdefault(agent, {})
        for name, spec in self.wanted(agent).items():
            if name not in mine:
                mine[name] = McpServer(name, spec, agent, connector(name, spec), self.sampler)
            mine[name].start()
        self._begun.setdefault(agent, asyncio.Event()).set()

    def tools(self, agent: str) -> dict[str, Tool]:
        offered = self._ready_tools(agent)
        merged: dict[str, Tool] = dict(offered)
        if any(t.compact for t in offered.values()):
            schema_tool = self._schema_tools.get(agent)
            if schema_tool is None:
                schema_tool = self._schema_tools[agent] = McpSchemaTool(lambda: self._ready_tools(agent))
            merged["mcp_schema"] = schema_tool
        return merged

    def _ready_tools(self, agent: str) -> dict[str, McpTool]:
        offered: dict[str, McpTool] = {}
        for server in self.servers.get(agent, {}).values():
            if server.state == "ready":
                offered.update(server.tools)
        return offered

    async def settle(self, agent: str, timeout: float = SETTLE_SECONDS) -> None:
        """Before a turn: a server that failed a while ago is tried again, and one still
        starting is waited for (briefly), so that the turn sees its tools."""
        if self.wanted(agent):  # a turn right after start: the runtime, then its servers, come first
            begun = self._begun.setdefault(agent, asyncio.Event())
            try:
                await asyncio.wait_for(begun.wait(), timeout)
            except TimeoutError:
                return
        servers = list(self.servers.get(agent, {}).values())
        for server in servers:
            if server.retry_due():
                server.start()
        starting = [s.wait_ready(timeout) for s in servers if s.state == "starting"]
        if starting:
            await asyncio.gather(*starting)

    def describe(self) -> list[dict[str, Any]]:
        out = [s.describe() for mine in self.servers.values() for s in mine.values()]
        known = {(d["agent"], d["server"]) for d in out}
        for name, spec in self.configs.items():
            for agent in spec.agents or ["*"]:
                if agent != "*" and (agent, name) not in known:
                    out.append({"server": name, "agent": agent, "state": "not started", "tools": []})
        return out

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for mine in self.servers.values() for s in mine.values()))
