"""The persona is built from the workspace files, and stays byte-stable between turns."""

from __future__ import annotations

import os
from pathlib import Path

from hermitcrab.agent.context import Persona, build_messages
from hermitcrab.store.sessions import Event


def test_placeholders_and_empty_files_cost_nothing(tmp_path: Path) -> None:
    (tmp_path / "SOUL.md").write_text("# Persona\n\nYou are Crab.\n")
    (tmp_path / "USER.md").write_text("# About the user\n\n(Nothing yet.)\n")
    prompt = Persona(tmp_path).system_prompt()
    assert "You are Crab." in prompt
    assert "About the user" not in prompt and "Nothing yet" not in prompt


def test_prompt_is_stable_and_follows_edits(tmp_path: Path) -> None:
    soul = tmp_path / "SOUL.md"
    soul.write_text("# Persona\nOne.\n")
    persona = Persona(tmp_path)
    first = persona.system_prompt()
    assert persona.system_prompt() == first
    soul.write_text("# Persona\nTwo.\n")
    os.utime(soul, ns=(1, 10**18))  # make sure the change is seen even within one mtime tick
    assert "Two." in persona.system_prompt()


def test_messages_in_order(tmp_path: Path) -> None:
    def ev(i: int, text: str, kind: str = "message") -> Event:
        return Event(i, "s", kind, {"text": text}, 0.0)

    messages = build_messages("sys", [(ev(1, "q1"), ev(3, "a1", "reply"))], ev(4, "q2"))
    assert [(m.role, m.content) for m in messages] == [
        ("system", "sys"),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]


def test_the_persona_never_follows_a_link_out_of_the_workspace(tmp_path) -> None:
    """The sandbox writes the workspace: `ln -s ../secrets.json USER.md` must not put a host
    secret into the system prompt (which inference.local would hand back to the sandbox)."""
    import os

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (tmp_path / "secrets.json").write_text('{"github": "ghp_very_secret"}')
    (workspace / "AGENTS.md").write_text("# Rules\n\nBe kind.\n")
    (workspace / "USER.md").symlink_to("../secrets.json")
    os.mkfifo(workspace / "SOUL.md")  # a reader that opened it would wait forever
    (workspace / "MEMORY.md").write_text("x" * 200_000)
    prompt = Persona(workspace).system_prompt()
    assert "ghp_very_secret" not in prompt and "Be kind." in prompt
    assert len(prompt) < 70_000  # a huge file is read only so far


def test_results_reach_the_model_in_the_order_of_its_calls() -> None:
    from hermitcrab.store.sessions import MODEL_RESPONSE, TOOL_RESULT

    def event(kind: str, data: dict, id_: int) -> Event:
        return Event(id_, "s", kind, data, 0.0, 1)

    calls = [{"kind": "tool_call", "id": f"c{i}", "name": "read_file", "arguments": "{}"} for i in range(3)]
    finished = [
        {"call_id": f"c{i}", "content": str(i), "error": False, "name": "read_file"} for i in (2, 0, 1)
    ]
    steps = [event(MODEL_RESPONSE, {"parts": calls}, 2)]
    steps += [event(TOOL_RESULT, data, 3 + n) for n, data in enumerate(finished)]  # not in the order asked
    messages = build_messages("", [], event("message", {"text": "go"}, 1), steps)
    assert [r.call_id for r in messages[-1].tool_results] == ["c0", "c1", "c2"]
