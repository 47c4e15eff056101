"""`hermitcrab bench memory`: the memory index at the size a year of notes reaches.

A temporary workspace gets 10,000 notes in 100 daily files (a hundred lines a day), among
them a labelled set: facts ("The boat is called Nautilus.") whose plain questions ("what
is the boat called") must find them. Measured in one run: the first full index, a search
(p50 over every labelled question), re-reading one edited file, and recall@5 of the set.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

NOTES = 10_000
DAYS = 100
SEARCH_TARGET_MS = 20.0

THINGS = (
    "boat", "cat", "dog", "car", "router", "bike", "garden", "printer", "laptop", "piano", "drone",
    "tent", "camera", "kettle", "boiler", "server", "robot", "project", "band", "plant",
)  # fmt: skip
NAMES = (
    "Nautilus", "Biscuit", "Pepper", "Comet", "Falcon", "Juniper", "Maple", "Orion", "Pixel",
    "Quartz", "Saffron", "Tango", "Umber", "Velvet", "Willow", "Yarrow", "Zephyr", "Atlas",
    "Basil", "Cobalt",
)  # fmt: skip
FILLER = (
    "Met {who} for coffee and talked about the {thing}.",
    "Remember to buy {item} on the way home.",
    "The meeting about the {thing} moved to {day}.",
    "Read an article on {topic}; worth a second look.",
    "Paid the {item} bill; next one due in a month.",
    "{who} recommended a book on {topic}.",
    "Backed up the photos from {day}.",
    "Ran 5 km along the river; knee fine.",
)
WHO = ("Ana", "Ben", "Chloé", "Dmitri", "Eun", "Farid", "Greta", "Hugo")
ITEMS = ("milk", "batteries", "coffee", "stamps", "bread", "light bulbs", "water", "internet")
TOPICS = ("sailing", "compilers", "gardening", "jazz", "bread baking", "astronomy", "chess")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
# Each thing in words the note does not use: only meaning can find these.
OTHER_WORDS = (
    "sailing vessel", "kitten", "puppy", "automobile", "wifi box", "bicycle", "vegetable patch",
    "inkjet", "notebook computer", "keyboard instrument", "quadcopter", "camping shelter",
    "photo gear", "teapot", "water heater", "home lab machine", "android helper", "side venture",
    "music group", "houseplant",
)  # fmt: skip


@dataclass(frozen=True)
class Fact:
    path: str
    line: int
    question: str


def write_notes(workspace: Path, notes: int = NOTES, days: int = DAYS, seed: int = 7) -> list[Fact]:
    """The notes, and the labelled facts among them: each thing named once, on a random day."""
    rng = random.Random(seed)
    folder = workspace / "memory"
    folder.mkdir(parents=True, exist_ok=True)
    start = date(2026, 1, 1)
    per_day = notes // days
    placed = {
        rng.randrange(days * per_day): (thing, name, other)
        for thing, name, other in zip(THINGS, NAMES, OTHER_WORDS, strict=True)
    }
    facts = []
    for d in range(days):
        path = f"memory/{start + timedelta(days=d)}.md"
        lines = [f"# {start + timedelta(days=d)}"]
        for n in range(per_day):
            index = d * per_day + n
            if index in placed:
                thing, name, other = placed[index]
                lines.append(f"- The {thing} is called {name}.")
                # Asked the way it was written, in other words (no word of it but the thing),
                # and with no word of it at all.
                facts.append(Fact(path, len(lines), f"what is the {thing} called"))
                facts.append(Fact(path, len(lines), f"what's the name of my {thing}?"))
                facts.append(Fact(path, len(lines), f"what did I name my {other}"))
            else:
                lines.append("- " + rng.choice(FILLER).format(
                    who=rng.choice(WHO), thing=rng.choice(THINGS), item=rng.choice(ITEMS),
                    topic=rng.choice(TOPICS), day=rng.choice(DAY_NAMES),
                ))  # fmt: skip
        (workspace / path).write_text("\n".join(lines) + "\n")
    return facts


def recall_at(memory: Any, facts: list[Fact], k: int = 5) -> float:
    found = 0
    for fact in facts:
        hits = memory.search(fact.question, k)
        found += any((h.path, h.line) == (fact.path, fact.line) for h in hits)
    return found / len(facts)


def measure() -> dict[str, Any]:
    """Hybrid search where the embedding model is installed, with BM25 alone beside it
    (`bm25_only`), measured in the same run on the same notes."""
    from hermitcrab.memory.embeddings import embedder

    model = embedder()
    if model is None:
        return measure_mode(None)
    # The notes repeat their filler lines, and a line's vector is made once: how fast new
    # lines embed is measured apart, on lines that are all different.
    rng = random.Random(11)
    unique = [
        f"- {rng.choice(WHO)} said the {rng.choice(THINGS)} needs {rng.choice(ITEMS)} by day {n}."
        for n in range(500)
    ]
    started = time.perf_counter()
    model.encode(unique)
    per_s = len(unique) / (time.perf_counter() - started)
    return {**measure_mode(model), "embed_lines_per_s": round(per_s), "bm25_only": measure_mode(None)}


def measure_mode(model: Any) -> dict[str, Any]:
    from hermitcrab.memory import Memory
    from hermitcrab.memory.search import forget_queries
    from hermitcrab.store import Store

    with tempfile.TemporaryDirectory(prefix="hc-bench-memory-") as tmp:
        root = Path(tmp)
        facts = write_notes(root / "ws")
        store = Store(root / "state.db")
        try:
            memory = Memory(store.memory, "main", root / "ws", embedder=model)
            started = time.perf_counter()
            memory.sync()
            index_s = time.perf_counter() - started
            lines = store.memory.count("main")
            times = []
            for fact in facts * 5:
                forget_queries()  # each search as a new question: its vector made, not recalled
                started = time.perf_counter()
                memory.search(fact.question, 5)
                times.append((time.perf_counter() - started) * 1000)
            edited = root / "ws" / facts[0].path
            reindex = []
            for n in range(10):
                with edited.open("a") as handle:
                    handle.write(f"- Edited note {n}.\n")
                started = time.perf_counter()
                memory.sync()
                reindex.append((time.perf_counter() - started) * 1000)
            recall = recall_at(memory, facts)
            recall_at_same = recall_at(memory, facts[::3])
            recall_other = recall_at(memory, facts[2::3])
        finally:
            store.close()
    return {
        "notes": lines,
        "files": DAYS,
        "index_all_s": round(index_s, 2),
        "search_p50_ms": round(statistics.median(times), 2),
        "search_target_ms": SEARCH_TARGET_MS,
        "reindex_one_file_ms": round(statistics.median(reindex), 2),
        "recall_at_5": round(recall, 3),
        "recall_at_5_same_words": round(recall_at_same, 3),
        "recall_at_5_other_words": round(recall_other, 3),
        "labelled_questions": len(facts),
        # bm25: no embedding model is installed (see `doctor`)
        "mode": "hybrid" if model is not None else "bm25",
    }


def bench(json_output: bool) -> None:
    results = measure()
    if json_output:
        print(json.dumps(results, indent=2))
        return
    r = results
    print(
        f"memory: {r['notes']:,} notes in {r['files']} files, indexed in {r['index_all_s']} s ({r['mode']})"
    )
    print(f"  search p50            {r['search_p50_ms']:7.2f} ms   (target <= {SEARCH_TARGET_MS:g} ms)")
    print(f"  re-read one file      {r['reindex_one_file_ms']:7.2f} ms")
    print(f"  recall@5              {r['recall_at_5']:7.3f}   ({r['labelled_questions']} labelled questions)")
    print(f"    asked in its words  {r['recall_at_5_same_words']:7.3f}")
    print(f"    with none of them   {r['recall_at_5_other_words']:7.3f}")
    if "embed_lines_per_s" in r:
        print(f"  embedding new lines   {r['embed_lines_per_s']:7d} a second")
    if "bm25_only" in r:
        b = r["bm25_only"]
        print(f"  BM25 alone, same run: indexed in {b['index_all_s']} s, search p50 {b['search_p50_ms']} ms,")
        print(
            f"    recall@5 {b['recall_at_5']} (its words {b['recall_at_5_same_words']},"
            f" none of them {b['recall_at_5_other_words']})"
        )
