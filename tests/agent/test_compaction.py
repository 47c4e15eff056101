"""Compaction through the real gateway with a scripted model: older exchanges become a
note, and what must not be lost is kept whatever a later summary forgets."""

from __future__ import annotations

import json
import shutil

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.inference.base import ChatRequest
from hermitcrab.inference.scripted import Call, Say, ScriptedProvider
from tests.agent.test_loop import ask

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

RULE = "Always answer in French."


class Model:
    """Answers turns with text, and compaction requests with the summaries it is given,
    in order (the later ones forget everything: the merge must not)."""

    def __init__(self, summaries: list[str]) -> None:
        self.summaries = summaries
        self.compactions = 0
        self.turn_prompts: list[str] = []

    def __call__(self, request: ChatRequest) -> Say | str:
        system = request.messages[0].content if request.messages else ""
        if system.startswith("You compact a conversation"):
            summary = self.summaries[min(self.compactions, len(self.summaries) - 1)]
            self.compactions += 1
            return summary
        self.turn_prompts.append(system)
        last = request.messages[-1]
        if last.role == "user" and last.content.startswith("use a tool"):
            return Say(calls=(Call("list_files", {"path": "."}),))
        return f"reply to: {last.content if last.role == 'user' else 'the tool'}"


def configure(home: Paths, **compaction: object) -> None:
    text = home.config.read_text().replace(
        "  main:\n    model: embedded\n",
        "  main:\n    model: embedded\n    max_history_messages: 4\n"
        f"    compaction: {json.dumps({'keep_exchanges': 1, **compaction})}\n",
    )
    home.config.write_text(text)


def test_a_rule_and_an_open_task_survive_three_compactions(live_gateway, home: Paths) -> None:
    configure(home)
    first = json.dumps({
        "instructions": ["Answer in French."], "open_tasks": ["Book the train to Lyon"],
        "user_facts": ["Lives in Brest"], "remember": ["The user lives in Brest."],
    })  # fmt: skip
    model = Model([first, "{}", '{"instructions": [], "decisions": ["Take the 9:00 train"]}'])
    provider = ScriptedProvider("embedded", [model])
    gw = live_gateway({"embedded": provider})
    ask(gw, "c", RULE)
    for n in range(1, 10):
        ask(gw, "c", f"message {n}")
    notes = [e for e in gw.events("c") if e["kind"] == "compaction"]
    assert len(notes) >= 3 and model.compactions == len(notes)
    prompt = model.turn_prompts[-1]
    assert "## Earlier in this conversation (compacted)" in prompt
    assert RULE in prompt and "Answer in French." in prompt  # the person's words, and the summary's
    assert "Book the train to Lyon" in prompt and "Lives in Brest" in prompt
    assert "Take the 9:00 train" in prompt
    # The note stands in for the older exchanges: they are not sent again.
    sent = [m.content for m in provider.requests[-1].messages if m.role == "user"]
    assert "message 1" not in sent and RULE not in sent and sent[-1] == "message 9"
    notes_written = list((home.workspace / "memory").glob("*.md"))
    assert notes_written and "The user lives in Brest." in notes_written[0].read_text()  # the flush


def test_a_finished_task_leaves_the_note(live_gateway, home: Paths) -> None:
    configure(home)
    model = Model(['{"open_tasks": ["Book the train"]}', '{"done": ["Book the train"]}'])
    gw = live_gateway({"embedded": ScriptedProvider("embedded", [model])})
    for n in range(7):
        ask(gw, "t", f"message {n}")
    notes = [e["data"]["sections"]["open_tasks"] for e in gw.events("t") if e["kind"] == "compaction"]
    assert notes[0] == ["Book the train"] and notes[-1] == []


def test_an_unreadable_summary_still_keeps_the_rules_and_is_not_asked_for_each_turn(
    live_gateway, home: Paths
) -> None:
    configure(home)
    model = Model(["I would rather not."])  # a model that cannot summarise
    provider = ScriptedProvider("embedded", [model])
    gw = live_gateway({"embedded": provider})
    answer = ask(gw, "u", RULE)
    for n in range(1, 6):
        answer = ask(gw, "u", f"message {n}")
        assert answer["kind"] == "reply"
    notes = [e["data"] for e in gw.events("u") if e["kind"] == "compaction"]
    assert notes and model.compactions == len(notes) < 5  # once per compaction, not each turn
    assert RULE in notes[-1]["sections"]["instructions"]
    assert RULE in model.turn_prompts[-1]


def test_tool_calls_and_results_are_never_split(live_gateway, home: Paths) -> None:
    configure(home)
    model = Model(['{"decisions": ["ok"]}'])
    provider = ScriptedProvider("embedded", [model])
    gw = live_gateway({"embedded": provider})
    for n in range(4):
        ask(gw, "p", f"message {n}")
    ask(gw, "p", "use a tool please")  # compaction comes first, then the turn's own steps
    assert any(e["kind"] == "compaction" for e in gw.events("p"))
    for request in provider.requests:
        calls = [p.id for m in request.messages if m.role == "assistant" for p in m.tool_calls]
        answered = [r.call_id for m in request.messages if m.role == "tool" for r in m.tool_results]
        assert calls == answered  # every call in a request has its result there, in order
