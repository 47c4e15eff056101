"""Memory through the real gateway (a scripted model writes a note, a later turn finds it)
and from the shell."""

from __future__ import annotations

import json
import shutil

import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def test_a_note_written_in_one_turn_is_found_in_the_next(home: Paths) -> None:
    replies = [
        {"calls": [{"name": "memory_write", "arguments": {"text": "The boat is called Nautilus."}}]},
        "Noted.",
        {"calls": [{"name": "memory_search", "arguments": {"query": "what is the boat called"}}]},
        "It is Nautilus.",
    ]
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies=json.dumps(replies)))
    assert hc(home, "up").returncode == 0
    try:
        first = json.loads(hc(home, "ask", "Remember: the boat is called Nautilus.", "--json").stdout)
        written = next(e["data"] for e in first["events"] if e["kind"] == "tool.result")
        assert not written["error"] and written["content"].startswith("remembered in memory/")
        second = json.loads(hc(home, "ask", "What is the boat called?", "--json").stdout)
        found = next(e["data"] for e in second["events"] if e["kind"] == "tool.result")
        assert "The boat is called Nautilus." in found["content"] and found["content"].startswith("memory/")
        assert found["taint"] is None  # the agent's own note, from an untainted turn
        notes = list((home.workspace / "memory").glob("*.md"))
        assert len(notes) == 1 and "The boat is called Nautilus." in notes[0].read_text()
    finally:
        hc(home, "down")
    shell = json.loads(hc(home, "memory", "search", "boat name", "--json").stdout)
    assert shell["hits"][0]["text"].endswith("The boat is called Nautilus.")
    assert hc(home, "memory", "reindex").stdout.startswith("indexed 2 memory file(s)")  # MEMORY.md too


def test_a_note_a_sandbox_wrote_taints_the_turn_that_finds_it(home: Paths) -> None:
    (home.workspace / "memory").mkdir()
    (home.workspace / "memory" / "2026-11-29.md").write_text("- The boat key is under the mat.\n")
    replies = [{"calls": [{"name": "memory_search", "arguments": {"query": "boat key"}}]}, "Found it."]
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies=json.dumps(replies)))
    assert hc(home, "up").returncode == 0
    try:
        asked = json.loads(hc(home, "ask", "Where is the boat key?", "--json").stdout)
        found = next(e["data"] for e in asked["events"] if e["kind"] == "tool.result")
        assert "under the mat" in found["content"]
        assert found["taint"] == "file memory/2026-11-29.md (not written by the agent)"
    finally:
        hc(home, "down")
