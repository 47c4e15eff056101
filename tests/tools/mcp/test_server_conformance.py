"""The agent as an MCP server, measured by the MCP project's conformance suite (server side)
against the real gateway's /mcp, and its progress notifications seen by the SDK's client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port
from tests.tools.mcp.conftest import listening, node_env

# The scenarios about the protocol itself. The others call a reference server's fixtures
# by name (a tool `test_image_content`, a resource `test://static-text`, a prompt
# `test_simple_prompt`...), which an agent has no reason to carry.
SCENARIOS = (
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "tools-call-error",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
)


def configure(home: Paths, replies: list) -> str:
    port = free_port()
    home.config.write_text(SCRIPTED_CONFIG.format(port=port, replies=json.dumps(replies)))
    return f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def bridged(home: Paths, node_bin: Path):
    """The gateway up, and the bearer bridge in front of its /mcp (the suite sends no token)."""
    upstream = configure(home, ["Bonjour!"])
    assert hc(home, "up").returncode == 0
    port = free_port()
    bridge = subprocess.Popen(
        [sys.executable, "-m", "tests.tools.mcp.bearer_bridge", upstream, str(home.token), str(port)],
        cwd=Path(__file__).parents[3],
    )
    try:
        listening(port, bridge, "the bearer bridge")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        bridge.terminate()
        bridge.wait(10)
        hc(home, "down")


def test_the_conformance_suites_protocol_scenarios_pass(bridged: str, node_bin: Path) -> None:
    failed = {}
    for scenario in SCENARIOS:
        run = subprocess.run(
            [str(node_bin / "conformance"), "server", "--url", bridged, "--scenario", scenario],
            env=node_env(node_bin),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if run.returncode != 0 or "FAILURE" in run.stdout + run.stderr:
            failed[scenario] = (run.stdout + run.stderr)[-1500:]
    assert not failed, failed


def test_send_message_reports_each_tool_call_as_progress(home: Paths) -> None:
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    search = {"name": "memory_search", "arguments": {"query": "the boat"}}
    url = configure(home, [{"calls": [search]}, "Nothing on the boat."])
    assert hc(home, "up").returncode == 0
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async def run() -> str:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {home.read_token()}"})
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            said = await client.call_tool("send_message", {"text": "boat?"}, progress_callback=on_progress)
            return said.content[0].text

    try:
        assert asyncio.run(run()) == "Nothing on the boat."
    finally:
        hc(home, "down")
    assert seen == [(1, "calling memory_search")]
