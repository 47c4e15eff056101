"""Each of the store's tables, through its module, on both engines (SQLite and PostgreSQL):
jobs and their runs (a slot recorded once), approvals, chat pairing and cursors, usage,
the memory index (full-text search ranked, vectors kept by digest), taint marks, and
sandbox records."""

from __future__ import annotations

import time
from pathlib import Path

from hermitcrab.store.memory_index import Chunk, Vectors
from hermitcrab.store.store import Store


def test_jobs_and_their_runs(where: Path | str) -> None:
    store = Store(where)
    try:
        job = store.jobs.add(
            "main", "main", "Check the backups", every_s=3600.0, created_by="cli", tainted=True
        )
        again = store.jobs.add("main", "main", "Once", run_at=time.time() + 60, created_by="cli")
        assert again.id != job.id and store.jobs.get(job.id).text == "Check the backups"
        assert [j.id for j in store.jobs.all("main")] == [job.id, again.id]
        run = (100.0, 100.0, "ran", "main", 7, 0, None)
        store.jobs.record(job, [run], last_slot=100.0, next_due=3700.0, ran_at=101.0, done=False)
        store.jobs.record(job, [run], last_slot=100.0, next_due=3700.0, ran_at=102.0, done=False)  # once
        assert store.jobs.slots(job.id) == [100.0]
        assert [r.outcome for r in store.jobs.history(job.id)] == ["ran"]
        assert store.jobs.set_state(again.id, "removed") and not store.jobs.set_state(9999, "removed")
    finally:
        store.close()


def test_approvals_pairing_cursors_and_usage(where: Path | str) -> None:
    store = Store(where)
    try:
        item = {"id": "a1-1", "kind": "tool", "sandbox": "agent", "session_id": "main",
                "subject": {"summary": "exec: ls"}, "state": "pending", "always": False, "decided_by": None,
                "reason": None, "created_at": time.time(), "expires_at": time.time() + 600}  # fmt: skip
        store.approvals.put(item)
        store.approvals.put({**item, "state": "approved", "always": True, "decided_by": "cli"})
        (recent,) = store.approvals.recent()
        assert (
            recent["state"] == "approved"
            and recent["always"]
            and recent["subject"] == {"summary": "exec: ls"}
        )

        asked = store.pairing.ask("telegram", "42", "ana")
        assert store.pairing.ask("telegram", "42", "ana").code == asked.code  # the same code while it lasts
        assert store.pairing.approve(asked.code.lower(), "owner", "cli").approved
        assert store.pairing.revoke("telegram", "42", "cli") and not store.pairing.revoke(
            "telegram", "43", "cli"
        )
        store.cursors.set("matrix", "s1")
        store.cursors.set("matrix", "s2")
        assert store.cursors.get("matrix") == "s2" and store.cursors.get("slack") is None

        store.usage.record("main", "main", "embedded", 100, 20, 12.5, 0.001)
        store.usage.record("main", None, "embedded", 50, 10, 8.0, 0.002)
        assert abs(store.usage.spent_today("main") - 0.003) < 1e-9
        (day,) = store.usage.summary("day")
        assert (day["calls"], day["prompt_tokens"]) == (2, 150)
    finally:
        store.close()


def test_memory_search_marks_and_sandboxes(where: Path | str) -> None:
    store = Store(where)
    try:
        chunks = [
            Chunk(1, "Backups", "The backup code is 7741."),
            Chunk(2, "Backups", "Backups run nightly at three."),
            Chunk(3, "Trips", "Ana flies to Lisbon on Friday."),
        ]
        vectors = Vectors("minilm", {1: (b"d1", b"\x00" * 8), 3: (b"d3", b"\x01" * 8)})
        store.memory.replace("main", "MEMORY.md", (1, 2), chunks, vectors)
        hits = store.memory.search("main", '"backup" OR "code"', 5)
        assert hits[0].line == 1 and {h.line for h in hits} <= {1, 2}  # stemmed: backups too
        assert all(h.bm25 <= 0 for h in hits)  # lower is better, as FTS5's rank
        assert store.memory.search("other", '"backup"', 5) == []
        assert store.memory.known_vectors("main", [b"d3", b"dx"]) == {b"d3": b"\x01" * 8}
        assert store.memory.count("main") == 3 and store.memory.stamps("main")["MEMORY.md"][0] == (1, 2)
        store.memory.forget("main", "MEMORY.md")
        assert store.memory.count("main") == 0

        store.file_marks.mark("main", "notes/a.md", True, "web page", "main", 123)
        mark = store.file_marks.get("main", "notes/a.md")
        assert mark is not None and mark.tainted and mark.mtime_ns == 123

        record = store.sandboxes.put("agent", "{}", "h1", "/ws", follows_file=False, agent="main")
        assert record.name == "agent" and not store.sandboxes.get("agent").follows_file
        assert store.sandboxes.delete("agent") and store.sandboxes.all() == []
    finally:
        store.close()
