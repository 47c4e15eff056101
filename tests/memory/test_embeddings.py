"""Embeddings for memory search: all-MiniLM-L6-v2 run on numpy gives what
sentence-transformers gives, and blended with BM25 it finds a line by its meaning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hermitcrab.memory import Memory
from hermitcrab.memory.embeddings import MODEL_NAME, MiniLM, embedder, unavailable_reason
from hermitcrab.store import Store

# Made once with sentence-transformers 6.3.0 and torch on the same model files (the
# package's own loader): token ids and unnormalised vectors for awkward texts: accents,
# CJK, a word longer than WordPiece takes, more than 256 tokens, nothing at all.
REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def model() -> MiniLM:
    loaded = embedder()
    assert loaded is not None, unavailable_reason()
    return loaded


def test_tokens_and_vectors_match_the_reference_implementation(model: MiniLM) -> None:
    assert REFERENCE["model"] == MODEL_NAME
    ours = model.encode(REFERENCE["texts"])
    for text, ids, theirs, vector in zip(
        REFERENCE["texts"], REFERENCE["token_ids"], REFERENCE["vectors"], ours, strict=True
    ):
        assert model.tokenizer.encode(text) == ids, text
        theirs = np.asarray(theirs) / np.linalg.norm(theirs)  # the Normalize module
        assert np.abs(vector - theirs).max() < 1e-5, text


def test_meaning_finds_a_line_that_shares_no_word_with_the_question(tmp_path: Path, model: MiniLM) -> None:
    store = Store(tmp_path / "state.db")
    workspace = tmp_path / "ws"
    (workspace / "memory").mkdir(parents=True)
    (workspace / "MEMORY.md").write_text(
        "- The boat is called Nautilus.\n- Ana's birthday is on 3 May.\n- The router's page is 10.0.0.1.\n"
    )
    question = "what name did I give my sailing vessel"
    try:
        assert Memory(store.memory, "main", workspace, embedder=None).search(question) == []
        hits = Memory(store.memory, "main", workspace, embedder=model).search(question)
        assert hits[0].where == "MEMORY.md:1"
        # Nothing close in meaning and no word in common: nothing, not the least bad line.
        assert Memory(store.memory, "main", workspace, embedder=model).search("quantum chromodynamics") == []
    finally:
        store.close()


class Counting:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, model: MiniLM) -> None:
        self.model, self.texts = model, []

    def encode(self, texts: list[str]) -> Any:
        self.texts.extend(texts)
        return self.model.encode(texts)


def test_an_edit_embeds_only_new_lines_and_an_old_index_gains_vectors(tmp_path: Path, model: MiniLM) -> None:
    store = Store(tmp_path / "state.db")
    workspace = tmp_path / "ws"
    (workspace / "memory").mkdir(parents=True)
    note = workspace / "memory" / "2026-12-07.md"
    note.write_text("- Fed the cat.\n- Paid the water bill.\n")
    try:
        # Indexed where no model was installed: BM25 alone, no vectors.
        assert Memory(store.memory, "main", workspace, embedder=None).sync() == 1
        counting = Counting(model)
        memory = Memory(store.memory, "main", workspace, embedder=counting)  # type: ignore[arg-type]
        assert memory.sync() == 1 and sorted(counting.texts) == ["- Fed the cat.", "- Paid the water bill."]
        assert memory.sync() == 0
        with note.open("a") as handle:
            handle.write("- The kettle is descaled.\n")
        counting.texts.clear()
        assert memory.search("limescale in the kettle")[0].where == "memory/2026-12-07.md:3"
        assert counting.texts == ["- The kettle is descaled.", "limescale in the kettle"]
    finally:
        store.close()
