"""The agent as an MCP server: the gateway's /mcp and `hermitcrab mcp serve` (stdio), met
by the official SDK's client as an editor would meet them."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc

pytest.importorskip("mcp")


@pytest.fixture
def up(daemon_home: Paths):
    assert hc(daemon_home, "up").returncode == 0
    yield daemon_home


def url(home: Paths) -> str:
    from hermitcrab.config.loader import load_config

    return f"{load_config(home.config).gateway.local_url}/mcp"


async def talk(client) -> tuple[list[str], str, list, list]:
    tools = sorted(t.name for t in (await client.list_tools()).tools)
    said = await client.call_tool("send_message", {"text": "hello over MCP", "session": "editor"})
    listed = await client.call_tool("list_sessions", {})
    sessions = listed.structured_content["result"]
    approvals = (await client.call_tool("list_approvals", {})).structured_content["result"]
    return tools, said.content[0].text, sessions, approvals


def test_the_gateway_serves_mcp_behind_its_token(up: Paths) -> None:
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    async def run() -> tuple:
        headers = {"Authorization": f"Bearer {up.read_token()}"}
        http = httpx2.AsyncClient(headers=headers)
        async with http, Client(streamable_http_client(url(up), http_client=http)) as client:
            return await talk(client)

    tools, said, sessions, approvals = asyncio.run(run())
    assert tools == ["answer_approval", "list_approvals", "list_sessions", "read_audit", "send_message"]
    assert said == "Bonjour!"  # the scripted model's first reply, through a real turn
    assert any(s["id"] == "editor" for s in sessions) and approvals == []
    events = json.loads(hc(up, "ask", "again", "--session", "editor", "--json").stdout)
    assert events["ok"]  # the same session, from another door

    no_token = httpx.post(url(up), json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, trust_env=False)
    assert no_token.status_code == 401
    rebound = httpx.post(
        url(up),
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": f"Bearer {up.read_token()}", "Host": "evil.example:80",
                 "Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        trust_env=False,
    )  # fmt: skip
    assert rebound.status_code in (403, 421), rebound.text  # DNS rebinding: a page's Host is refused


def test_mcp_serve_relays_stdio_to_the_gateway(up: Paths) -> None:
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hermitcrab", "mcp", "serve"],
        env={**os.environ, "HERMITCRAB_HOME": str(up.home)},
    )

    async def run() -> tuple:
        async with Client(server) as client:
            return await talk(client)

    tools, said, sessions, _ = asyncio.run(run())
    assert "send_message" in tools and said == "Bonjour!"
    assert any(s["id"] == "editor" for s in sessions)
