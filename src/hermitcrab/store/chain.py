"""The audit log as a hash chain: each entry carries the hash of the one before it.

An entry's hash covers what it says (time, actor, sandbox, action, argv, cwd, policy
version, rule, outcome, exit code, duration, bytes, limit, detail) and the hash before it,
so an entry changed, removed or slipped in breaks the chain there. Retention keeps it
checkable: pruning records the hash of the last entry it dropped (the anchor), and the
chain goes on from it. Two things are outside the chain: how many times an entry was
repeated (`repeats`, `last_ts`: counters on its row), and entries written by a version
of HermitCrab from before the chain (they have no hash, and are counted as such).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
CHAINED = (
    "ts", "actor", "sandbox", "action", "argv", "cwd", "policy_version", "rule",
    "outcome", "exit_code", "duration_ms", "bytes_out", "killed_by", "detail",
)  # fmt: skip


def entry_hash(previous: str, values: dict[str, Any]) -> str:
    """The hash of one entry, as stored (argv as its JSON text), after `previous`."""
    body = json.dumps([values[c] for c in CHAINED], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


def last_hash(conn: sqlite3.Connection) -> str:
    """Where the next entry's chain starts: the newest hashed entry, else the anchor."""
    row = conn.execute("SELECT hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
    if row is not None:
        return str(row[0])
    return anchor(conn)[0]


def anchor(conn: sqlite3.Connection) -> tuple[str, int]:
    """The hash of the last entry pruned (and its id), or the genesis."""
    row = conn.execute("SELECT hash, through_id FROM audit_anchor WHERE id = 1").fetchone()
    return (str(row[0]), int(row[1])) if row is not None else (GENESIS, 0)


def move_anchor(conn: sqlite3.Connection, through_id: int) -> None:
    """Before pruning the entries up to `through_id`: remember the last one's hash."""
    row = conn.execute(
        "SELECT id, hash FROM audit WHERE id <= ? AND hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        (through_id,),
    ).fetchone()
    if row is not None:
        conn.execute(
            "INSERT INTO audit_anchor (id, hash, through_id) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, through_id = excluded.through_id",
            (row[1], row[0]),
        )


@dataclass
class Verdict:
    ok: bool
    entries: int  # checked, in the chain
    unchained: int  # from before the chain existed
    first_broken: int | None = None  # the id of the first entry that does not hold
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "unchained": self.unchained,
            "first_broken": self.first_broken,
            "reason": self.reason,
        }


def verify(conn: sqlite3.Connection) -> Verdict:
    """Walk the whole log in order and check every link."""
    previous, anchored_at = anchor(conn)
    checked = unchained = 0
    started = False
    columns = ", ".join(("id", "hash", "prev_hash", *CHAINED))
    for row in conn.execute(f"SELECT {columns} FROM audit ORDER BY id"):
        values = dict(zip(("id", "hash", "prev_hash", *CHAINED), row, strict=True))
        problem = _problem(values, previous, started, bool(checked or anchored_at))
        if problem:
            return Verdict(False, checked, unchained, values["id"], problem)
        if values["hash"] is None:
            unchained += 1
            continue
        started = True
        previous = values["hash"]
        checked += 1
    return Verdict(True, checked, unchained)


def _problem(values: dict[str, Any], previous: str, started: bool, linked: bool) -> str | None:
    """What is wrong with one entry where the chain stands at `previous`, or None."""
    if values["hash"] is None:
        return "an entry without a hash inside the chain" if started else None
    if values["prev_hash"] != previous:
        return "the entry before it was removed or changed" if linked else "it does not start the chain"
    if entry_hash(previous, values) != values["hash"]:
        return "its content was changed after it was written"
    return None
