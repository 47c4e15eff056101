"""The agent loop end to end, through the real gateway and real sandboxes: a scripted
model asks for tool calls, the loop runs them and feeds the results back."""

from __future__ import annotations

import json
import shutil

import pytest

from hermitcrab.inference.base import ChatRequest
from hermitcrab.inference.scripted import Call, Say, ScriptedProvider
from tests.conftest import LiveGateway, wait_for

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def ask(gw: LiveGateway, session: str, text: str, timeout: float = 30.0, **options: object) -> dict:
    with gw.client() as client:
        response = client.post(f"/api/sessions/{session}/messages", json={"text": text, **options})
    assert response.status_code == 202, response.text
    asked = response.json()["message_id"]

    def answer() -> dict | None:  # this message's own answer, not any earlier one's
        found = [
            e for e in gw.events(session) if e["reply_to"] == asked and e["kind"] in ("reply", "turn.failed")
        ]
        return found[-1] if found else None

    return wait_for(answer, timeout, what=f"the answer to message {asked} in session {session}")


def kinds(gw: LiveGateway, session: str) -> list[str]:
    return [e["kind"] for e in gw.events(session)]


def results(gw: LiveGateway, session: str) -> list[dict]:
    """The tool results, in the order of their calls (read-only calls run side by side, and
    their results are logged as they finish)."""
    events = gw.events(session)
    order = {e["data"]["call_id"]: e["id"] for e in events if e["kind"] == "tool.call"}
    found = [e["data"] for e in events if e["kind"] == "tool.result"]
    return sorted(found, key=lambda r: order.get(r["call_id"], 0))


def last_result(request: ChatRequest) -> str:
    return request.messages[-1].tool_results[-1].content


def test_the_agent_writes_a_file_in_its_sandbox_then_reads_it_back(live_gateway, home) -> None:
    provider = ScriptedProvider("embedded", [
        Say("Writing it.", (Call("write_file", {"path": "notes.txt", "content": "crab"}),)),
        Say(calls=(Call("read_file", {"path": "notes.txt"}),)),
        lambda request: f"notes.txt holds: {last_result(request)}",
    ])  # fmt: skip
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "w", "Create notes.txt containing crab, then tell me what is in it.")
    assert answer["kind"] == "reply" and answer["data"]["text"] == "notes.txt holds: crab"
    assert (home.workspace / "notes.txt").read_text() == "crab"
    assert kinds(gw, "w") == [
        "message", "turn.started",
        "model.response", "tool.call", "tool.result",
        "model.response", "tool.call", "tool.result",
        "model.response", "reply",
    ]  # fmt: skip
    events = gw.events("w")
    call = next(e for e in events if e["kind"] == "tool.call")
    result = next(e for e in events if e["kind"] == "tool.result")
    assert result["data"]["call_event"] == call["id"] and call["id"] < result["id"]  # committed first
    # What the model was sent: every tool with its schema, then its own call and the result.
    first, second = provider.requests[0], provider.requests[1]
    assert {t.name for t in first.tools} >= {"exec", "read_file", "write_file", "web_fetch", "schedule"}
    assert second.messages[-2].tool_calls[0].name == "write_file"
    assert second.messages[-1].role == "tool" and second.messages[-1].tool_results[0].content.startswith(
        "wrote 4"
    )
    audit = gw.gateway.runtime.audit.entries(sandbox="agent-main")
    assert [(e.action, e.outcome) for e in audit if e.action == "tool"] == [("tool", "allowed")] * 2


def test_bad_calls_become_results_the_model_can_act_on(live_gateway, home) -> None:
    provider = ScriptedProvider("embedded", [
        Say(calls=(
            Call("write_file", '{"path": "fixed.txt", "content": "ok"'),  # a brace short: repaired
            Call("fly", {"to": "the moon"}),
            Call("read_file", {"path": 5}),
            Call("exec", "not json at all"),
        )),
        "I see what went wrong.",
    ])  # fmt: skip
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "b", "do things")
    assert answer["kind"] == "reply"
    repaired, unknown, invalid, broken = results(gw, "b")
    assert not repaired["error"] and "repaired malformed JSON" in repaired["content"]
    assert (home.workspace / "fixed.txt").read_text() == "ok"
    assert (
        unknown["error"] and "unknown tool 'fly'" in unknown["content"] and "read_file" in unknown["content"]
    )
    assert invalid["error"] and "path: Input should be a valid string" in invalid["content"]
    assert '"required":["path"]' in invalid["content"]  # the schema, to fix the call by
    assert broken["error"] and "not valid JSON" in broken["content"]
    assert [p.error for p in provider.requests[1].messages[-1].tool_results] == [False, True, True, True]


def test_the_step_cap_ends_a_turn_that_never_stops_calling(live_gateway, home) -> None:
    home.config.write_text(home.config.read_text() + "    max_tool_steps: 3\n")
    provider = ScriptedProvider(
        "embedded", [lambda r: Say(calls=(Call("list_files", {"path": f"d{len(r.messages)}"}),))]
    )
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "cap", "loop forever")
    assert answer["kind"] == "turn.failed" and "max_tool_steps" in answer["data"]["error"]
    assert len(provider.requests) == 4 and provider.requests[-1].tool_choice == "none"
    assert kinds(gw, "cap").count("tool.result") == 3


def test_a_model_that_repeats_its_call_is_made_to_answer(live_gateway) -> None:
    same = Say(calls=(Call("list_files", {}),))
    provider = ScriptedProvider("embedded", [same, same, "Here is what I found."])
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "loop", "what is here?")
    assert answer["data"]["text"] == "Here is what I found."
    assert [r.tool_choice for r in provider.requests] == [None, None, "none"]


def test_a_huge_result_is_cut_and_kept_whole_in_the_workspace(live_gateway, home) -> None:
    home.config.write_text(home.config.read_text() + "    max_tool_result_chars: 1000\n")
    provider = ScriptedProvider("embedded", [
        Say(calls=(Call("exec", {"command": "head -c 50000 /dev/zero | tr '\\0' a"}),)), "ok",
    ])  # fmt: skip
    gw = live_gateway({"embedded": provider})
    ask(gw, "huge", "make noise")
    (result,) = results(gw, "huge")
    assert result["content"].startswith("a" * 1000)
    assert (
        "[cut at 1000 of 50000 characters; the whole result is in .hermitcrab/tool-output/"
        in result["content"]
    )
    saved = next((home.workspace / ".hermitcrab" / "tool-output").iterdir())
    assert saved.read_text() == "a" * 50000


def test_a_tool_that_outlives_its_timeout_becomes_a_result(live_gateway, home) -> None:
    home.config.write_text(home.config.read_text() + "    tool_timeout_seconds: 0.5\n")
    provider = ScriptedProvider(
        "embedded", [Say(calls=(Call("exec", {"command": "sleep 30"}),)), "moving on"]
    )
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "slow", "wait")
    assert answer["data"]["text"] == "moving on"
    (result,) = results(gw, "slow")
    assert result["error"] and "did not finish within 0.5 s" in result["content"]


def test_the_tool_choice_of_a_message_reaches_the_model(live_gateway) -> None:
    provider = ScriptedProvider("embedded", ["hi"])
    gw = live_gateway({"embedded": provider})
    ask(gw, "tc", "write crab", tool_choice="write_file")
    assert provider.requests[0].tool_choice == "write_file"


def test_a_tool_the_policy_does_not_list_is_denied(live_gateway, home) -> None:
    home.policy.write_text(home.policy.read_text().replace("allow: [exec,", "allow: [").replace(
        "deny: []", "deny: [write_file]"))  # fmt: skip
    calls = (Call("exec", {"command": "touch x"}), Call("write_file", {"path": "y", "content": ""}))
    provider = ScriptedProvider("embedded", [Say(calls=calls), "ok"])
    gw = live_gateway({"embedded": provider})
    ask(gw, "deny", "try")
    unlisted, denied = results(gw, "deny")
    assert unlisted["error"] and "not in tools.allow: exec" in unlisted["content"]
    assert denied["error"] and "tools.deny: write_file" in denied["content"]
    assert not (home.workspace / "x").exists() and not (home.workspace / "y").exists()


def test_events_carry_parts_through_the_api(live_gateway) -> None:
    provider = ScriptedProvider("embedded", [Say("Looking.", (Call("list_files", {}),)), "Nothing much."])
    gw = live_gateway({"embedded": provider})
    ask(gw, "parts", "what is here?")
    response = next(e for e in gw.events("parts") if e["kind"] == "model.response")
    text, call = response["data"]["parts"]
    assert text == {"kind": "text", "text": "Looking."}
    assert (
        call["kind"] == "tool_call" and call["name"] == "list_files" and json.loads(call["arguments"]) == {}
    )


def test_spawn_agent_runs_a_narrower_sub_agent_and_returns_its_answer(live_gateway, home) -> None:
    home.policy.write_text(home.policy.read_text().replace("allow: [exec,", "allow: [spawn_agent, exec,"))
    provider = ScriptedProvider("embedded", [
        Say(calls=(Call("spawn_agent", {"task": "List it.", "tools": ["list_files"], "max_steps": 2}),)),
        "The workspace holds the persona files.",  # the sub-agent's answer
        lambda request: f"My helper says: {last_result(request)}",
    ])  # fmt: skip
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "boss", "What is in the workspace? Ask a helper.")
    assert answer["data"]["text"] == "My helper says: The workspace holds the persona files."
    (result,) = results(gw, "boss")
    assert not result["error"]
    with gw.client() as client:
        sessions = client.get("/api/sessions").json()["sessions"]
    child = next(s for s in sessions if s["id"].startswith("boss:sub"))
    assert [t.name for t in provider.requests[1].tools] == ["list_files"]  # only what it was given
    message = gw.events(child["id"])[0]
    assert message["data"]["tools"] == ["list_files"] and message["data"]["token_budget"] == 20000


def test_spawn_agent_refuses_tools_the_agent_does_not_have(live_gateway, home) -> None:
    home.policy.write_text(home.policy.read_text().replace("allow: [exec,", "allow: [spawn_agent, exec,"))
    spawn = Call("spawn_agent", {"task": "x", "tools": ["fly"]})
    gw = live_gateway({"embedded": ScriptedProvider("embedded", [Say(calls=(spawn,)), "ok"])})
    ask(gw, "boss2", "go")
    (refused,) = results(gw, "boss2")
    assert refused["error"] and "no such tool for a sub-agent: ['fly']" in refused["content"]


def test_call_ids_are_the_loops_own_whatever_the_model_sends(live_gateway, home) -> None:
    """A server that repeats an id (here: 'x' twice) must not make two calls one."""
    from hermitcrab.inference.base import Chunk, ToolCallDelta

    class SameIds(ScriptedProvider):
        async def stream(self, request):  # type: ignore[override]
            self.requests.append(request)
            if len(self.requests) > 1:
                yield Chunk("done", finish_reason="stop")
                return
            for index, name in enumerate(("write_file", "read_file")):
                arguments = {"path": "x.txt", "content": "1"} if name == "write_file" else {"path": "x.txt"}
                yield Chunk(tool_calls=(ToolCallDelta(index, "x", name, json.dumps(arguments)),))
            yield Chunk(finish_reason="tool_calls")

    gw = live_gateway({"embedded": SameIds("embedded")})
    ask(gw, "ids", "go")
    wrote, read = results(gw, "ids")
    assert wrote["call_id"] != read["call_id"] and read["content"] == "1"


def test_hostile_arguments_become_results_not_crashes(live_gateway) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    huge = '{"path": "' + "a" * 300_000 + '"}'
    unterminated = '{"path": "' + "b" * 20_000
    provider = ScriptedProvider("embedded", [
        Say(calls=(Call("read_file", deep), Call("read_file", huge), Call("read_file", unterminated))), "ok",
    ])  # fmt: skip
    gw = live_gateway({"embedded": provider})
    assert ask(gw, "hostile", "go")["kind"] == "reply"
    deep_result, huge_result, unterminated_result = results(gw, "hostile")
    assert deep_result["error"] and "nest too deeply" in deep_result["content"]
    assert huge_result["error"] and "more than 262144" in huge_result["content"]
    assert unterminated_result["error"] and "not valid JSON" in unterminated_result["content"]
