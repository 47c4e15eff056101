"""`hermitcrab mcp probe`: the MCP conformance suite's core client scenarios (the basic
ones and the OAuth ones), a real server, and the faults a person meets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hermitcrab.tools.mcp.arguments import elicited, example_arguments
from tests.conftest import free_port
from tests.tools.mcp.conftest import node_env

PROBE = [sys.executable, "-m", "hermitcrab", "mcp", "probe"]
# The suite's own test client id: its auth server expects exactly this one (SEP-991).
SUITE_CLIENT_ID = "https://conformance-test.local/client-metadata.json"


def test_every_core_conformance_scenario_passes(node_bin: Path, tmp_path: Path) -> None:
    command = " ".join([*PROBE, "--call", "all", "--client-metadata-url", SUITE_CLIENT_ID, "--url"])
    ran = subprocess.run(
        [
            str(node_bin / "conformance"),
            "client",
            "--suite",
            "core",
            "--command",
            command,
            "-o",
            str(tmp_path),
        ],
        env=node_env(node_bin),
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = {}
    for checks in tmp_path.rglob("checks.json"):
        statuses = [c["status"] for c in json.loads(checks.read_text())]
        results[checks.parent.relative_to(tmp_path).as_posix()] = statuses
    scenarios = {name.rsplit("-", 6)[0] for name in results}
    assert len(results) == 18, (sorted(results), ran.stdout[-2000:])
    assert {"initialize", "tools_call", "sse-retry", "elicitation-sep1034-client-defaults"} <= scenarios
    assert sum(name.startswith("auth/") for name in results) == 14
    failing = {
        name: s for name, s in results.items() if {"FAILURE", "WARNING"} & set(s) or "SUCCESS" not in s
    }
    assert not failing, ran.stdout[-3000:]
    assert ran.returncode == 0


def test_a_real_server_is_listed_and_only_its_read_only_tools_are_called(everything_url: str) -> None:
    ran = subprocess.run(
        [*PROBE, "--url", everything_url, "--json"], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["server"].startswith("mcp-servers/everything") and report["protocol_version"]
    tools = {t["name"]: t for t in report["tools"]}
    assert tools["echo"]["called"] and tools["echo"]["result"] == "Echo: hermitcrab"
    assert tools["get-sum"]["result"] == "The sum of 1 and 1 is 2."
    assert all(t["called"] == t["read_only"] for t in tools.values())  # nothing that may change things
    assert not tools["toggle-simulated-logging"]["called"]
    assert report["resources"] and report["prompts"]


def test_a_server_that_is_not_there_is_said_plainly() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    ran = subprocess.run([*PROBE, "--url", url], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1 and ran.stdout == ""
    assert url in ran.stderr and "Connect" in ran.stderr and "Traceback" not in ran.stderr


def test_bad_options_are_refused_before_connecting() -> None:
    bad_url = subprocess.run([*PROBE, "--url", "127.0.0.1:3000"], capture_output=True, text=True, timeout=60)
    assert bad_url.returncode == 1 and "not an http(s) URL" in bad_url.stderr
    bad_call = subprocess.run(
        [*PROBE, "--url", "http://x/mcp", "--call", "some"], capture_output=True, text=True
    )
    assert bad_call.returncode == 1 and "read-only, all, none" in bad_call.stderr


def test_arguments_come_from_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "number"},
            "b": {"type": "integer", "minimum": 5},
            "unit": {"type": "string", "enum": ["C", "F"]},
            "verbose": {"type": "boolean", "default": False},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "optional": {"type": "string"},
        },
        "required": ["a", "b", "unit", "tags"],
    }
    assert example_arguments(schema) == {
        "a": 1, "b": 5, "unit": "C", "verbose": False, "tags": ["hermitcrab", "hermitcrab"],
    }  # fmt: skip
    assert example_arguments(None) == {} and example_arguments({"type": "string"}) == {}


def test_an_elicitation_is_answered_from_defaults_or_declined() -> None:
    form = {
        "type": "object",
        "properties": {"name": {"type": "string", "default": "crab"}, "age": {"type": "integer"}},
    }
    assert elicited(form) == {"name": "crab"}
    assert elicited({**form, "required": ["age"]}) is None  # nobody is there to fill it in
