"""A turn cut short by a crash resumes from its events: a call with a result is never run
again; a read-only call without one runs again; a side-effecting call that may have run
is reported to the model as interrupted, never repeated; one still waiting for a person
never ran, so it is asked again."""

from __future__ import annotations

import json
import shutil

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.inference.scripted import ScriptedProvider
from hermitcrab.store import Store
from hermitcrab.store.sessions import (
    APPROVAL_ASKED,
    MESSAGE,
    MODEL_RESPONSE,
    TOOL_CALL,
    TOOL_RESULT,
    TURN_STARTED,
)
from tests.agent.test_loop import results

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def crashed_turn(
    home: Paths, calls: dict[str, tuple[str, dict]], committed: list[str], done: list[str] = ()
) -> None:
    """Write the log a gateway killed mid-turn leaves: one response with `calls` (by id),
    those in `committed` recorded as tool.call, results only for those in `done`."""
    store = Store(home.state_db)
    log = store.sessions
    log.ensure_session("c", "main")
    message = log.append("c", MESSAGE, {"role": "user", "text": "do it", "source": "api"})
    log.append("c", TURN_STARTED, {"agent": "main"}, message.id)
    parts = [
        {"kind": "tool_call", "id": call_id, "name": name, "arguments": json.dumps(arguments)}
        for call_id, (name, arguments) in calls.items()
    ]
    log.append("c", MODEL_RESPONSE, {"parts": parts, "usage": {}, "finish_reason": "tool_calls"}, message.id)
    for part in parts:
        if part["id"] not in committed:
            continue
        call = {"call_id": part["id"], "name": part["name"], "arguments": part["arguments"]}
        event = log.append("c", TOOL_CALL, call, message.id)
        if part["id"] in done:
            result = {"call_id": part["id"], "call_event": event.id, "name": part["name"],
                      "content": "done before", "error": False, "taint": None}  # fmt: skip
            log.append("c", TOOL_RESULT, result, message.id)
        if part["id"] == "asked":
            log.append("c", APPROVAL_ASKED, {"call_event": event.id, "approval_id": "a0"}, message.id)
    store.close()


def test_a_resumed_turn_never_repeats_a_side_effect(live_gateway, home) -> None:
    calls = {
        "done": ("exec", {"command": "echo again >> ran.txt"}),  # had a result: not run again
        "maybe": ("write_file", {"path": "maybe.txt", "content": "x"}),  # no result: interrupted
        "read": ("read_file", {"path": "AGENTS.md"}),  # read-only, no result: run again
        "new": ("exec", {"command": "touch never-started.txt"}),  # never committed: runs now
    }
    crashed_turn(home, calls, committed=["done", "maybe", "read"], done=["done"])
    provider = ScriptedProvider("embedded", ["Recovered."])
    gw = live_gateway({"embedded": provider})
    answer = gw.wait_answers("c", 1)[0]
    assert answer["kind"] == "reply" and answer["data"]["text"] == "Recovered."
    by_call = {r["call_id"]: r for r in results(gw, "c")}
    assert by_call["done"]["content"] == "done before"
    assert by_call["maybe"]["error"] and by_call["maybe"]["content"].startswith("interrupted")
    assert not (home.workspace / "maybe.txt").exists() and not (home.workspace / "ran.txt").exists()
    assert not by_call["read"]["error"] and "Operating rules" in by_call["read"]["content"]
    assert (home.workspace / "never-started.txt").exists()
    kinds = [e["kind"] for e in gw.events("c")]
    assert kinds.count("tool.call") == 4 and kinds.count("tool.result") == 4  # one each, never twice
    sent = provider.requests[0].messages[-1]
    assert sent.role == "tool" and len(sent.tool_results) == 4


def test_a_call_that_was_waiting_for_a_person_is_asked_again(live_gateway, home) -> None:
    home.policy.write_text(home.policy.read_text().replace("  ask: []", "  ask: [exec]"))
    crashed_turn(home, {"asked": ("exec", {"command": "touch after-restart.txt"})}, committed=["asked"])
    provider = ScriptedProvider("embedded", ["ok"])
    gw = live_gateway({"embedded": provider})
    with gw.client() as client:
        from tests.conftest import wait_for

        (held,) = wait_for(lambda: client.get("/api/approvals").json()["approvals"], what="the new question")
        assert held["summary"] == "exec: touch after-restart.txt"
        client.post(f"/api/approvals/{held['id']}", json={"decision": "approve"})
    gw.wait_answers("c", 1)
    assert (home.workspace / "after-restart.txt").exists()
