"""Memory: Markdown in the workspace is the truth, an FTS5 index finds its lines by BM25
(blended with embeddings where the model is installed) with recent notes first, and it
follows edits as they happen."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from hermitcrab.memory import Memory
from hermitcrab.memory.embeddings import embedder
from hermitcrab.memory.search import fts_query
from hermitcrab.store import Store


@pytest.fixture(params=["bm25", "hybrid"])
def memory(tmp_path: Path, request: pytest.FixtureRequest):
    """Each test twice: BM25 alone (no embedding model installed) and blended with vectors."""
    store = Store(tmp_path / "state.db")
    workspace = tmp_path / "ws"
    (workspace / "memory").mkdir(parents=True)
    model = embedder() if request.param == "hybrid" else None
    assert request.param == "bm25" or model is not None, "the dev install carries the embedding model"
    yield Memory(store.memory, "main", workspace, embedder=model)
    store.close()


def note(memory: Memory, name: str, text: str) -> Path:
    path = memory.workspace / name
    path.write_text(text)
    return path


def test_plain_questions_find_the_line_with_its_place(memory: Memory) -> None:
    note(memory, "MEMORY.md", "# Boat\n\n- The boat is called Nautilus.\n- It is moored in Brest.\n")
    note(memory, "memory/2026-11-20.md", "- Lunch with Ana on Friday.\n")
    hits = memory.search("what is the boat called")
    assert hits[0].where == "MEMORY.md:3" and hits[0].text == "- The boat is called Nautilus."
    assert hits[0].heading == "Boat"
    assert memory.search("where is it moored")[0].where == "MEMORY.md:4"
    assert memory.search("lunches")[0].path == "memory/2026-11-20.md"  # stemmed: lunches ~ lunch


def test_an_edit_is_seen_by_the_next_search_and_a_deleted_file_is_forgotten(memory: Memory) -> None:
    path = note(memory, "memory/2026-11-29.md", "- The printer code is 4411.\n")
    assert memory.search("printer code")[0].text.endswith("4411.")
    with path.open("a") as handle:  # a person appends a line, in place
        handle.write("- The wifi password is on the fridge.\n")
    assert memory.search("wifi password")[0].where == "memory/2026-11-29.md:2"
    path.unlink()
    assert memory.search("printer") == []


def test_recent_notes_come_first(memory: Memory) -> None:
    note(memory, "memory/2026-01-02.md", "- Call the plumber about the boiler.\n")
    note(memory, "memory/2026-11-28.md", "- Call the plumber about the boiler.\n")
    hits = memory.search("plumber boiler", today=date(2026, 11, 30))
    assert [h.path for h in hits] == ["memory/2026-11-28.md", "memory/2026-01-02.md"]


def test_hostile_text_neither_breaks_a_query_nor_a_link_reads_outside(memory: Memory, tmp_path: Path) -> None:
    for query in ['"', "NEAR(a b)", "boat* OR", "-", "AND OR NOT", "   "]:
        memory.search(query)  # no FTS5 syntax error reaches the caller
    assert fts_query('boat" OR "x') == '"boat" OR "x"'
    assert fts_query("the and") == '"the" OR "and"'  # only stop words: keep them
    secret = tmp_path / "secret.md"
    secret.write_text("- the launch code is 0000\n")
    os.symlink(secret, memory.workspace / "memory" / "linked.md")
    assert memory.search("launch code") == []


def test_reindex_rebuilds_from_the_files(memory: Memory) -> None:
    note(memory, "MEMORY.md", "- one\n- two\n")
    memory.sync()
    assert memory.index.count("main") == 2
    assert memory.reindex() == 1 and memory.index.count("main") == 2
    assert memory.sync() == 0  # nothing changed since: nothing read


def test_the_bench_finds_its_labelled_facts(tmp_path: Path) -> None:
    from hermitcrab.cli import bench_memory

    results = bench_memory.measure()
    assert results["notes"] == bench_memory.NOTES and results["files"] == bench_memory.DAYS
    assert results["labelled_questions"] == 3 * len(bench_memory.THINGS)
    assert results["mode"] == "hybrid" and results["bm25_only"]["mode"] == "bm25"
    # Asked in the note's words, both find it; asked in none of them, only meaning can.
    assert results["recall_at_5_same_words"] == results["bm25_only"]["recall_at_5_same_words"] == 1.0
    assert results["bm25_only"]["recall_at_5_other_words"] == 0.0
    assert results["recall_at_5_other_words"] >= 0.5
    assert results["search_p50_ms"] > 0 and results["reindex_one_file_ms"] > 0
