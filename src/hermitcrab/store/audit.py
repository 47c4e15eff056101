"""The audit log: every decision and every exec, who asked, what rule decided, what happened."""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from hermitcrab.store import chain

log = logging.getLogger("hermitcrab.audit")


@dataclass
class AuditEntry:
    actor: str  # who asked: "cli", "agent:main", "api"
    action: str  # "exec", "sandbox.create", "sandbox.destroy", ...
    outcome: str  # "ok", "failed", "denied", "killed"
    sandbox: str | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    policy_version: str | None = None
    rule: str | None = None  # the policy rule that decided, where one did
    exit_code: int | None = None
    duration_ms: float | None = None
    bytes_out: int | None = None
    killed_by: str | None = None
    detail: str | None = None
    id: int | None = None
    ts: float = field(default_factory=time.time)
    hash: str | None = None  # the chain: this entry's hash, and the one before it
    prev_hash: str | None = None
    repeats: int = 1  # the same decision again within AGGREGATE_WINDOW_S of the first
    last_ts: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = (
    "ts", "actor", "sandbox", "action", "argv", "cwd", "policy_version", "rule",
    "outcome", "exit_code", "duration_ms", "bytes_out", "killed_by", "detail", "prev_hash", "hash",
)  # fmt: skip
CONTENT = len(COLUMNS) - 2  # what an entry says; the two hashes link it (store/chain.py)


# Queued entries wait this long to be written together: one commit for a burst of network
# connections, rather than a commit (and a busy writer thread) racing each connection.
BATCH_WINDOW_S = 0.05

# The same entry again (same sandbox, decision, rule, target, detail) within this long of the
# first is counted on the first's row, not written again: a sandbox that retries a refused
# host a thousand times makes one row with repeats=1000 and the time of the last.
AGGREGATE_WINDOW_S = 60.0
RECENT_KEYS = 1024
UNAGGREGATED = ("asked", "approved")

INSERT = f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


# What a sandbox controls (its argv, a request's target) is audited, but only so much of it:
# one refused 60 KB request line a time, pipelined, once grew the store by 174 MB in 3 s.
MAX_FIELD_CHARS = 2048
MAX_DETAIL_CHARS = 16 * 1024  # a policy diff fits


def _capped(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text)} characters in all]"


def _values(entry: AuditEntry) -> list[Any]:
    """What an entry says, as stored (capped), without its hashes."""
    values = [getattr(entry, c) for c in COLUMNS[:CONTENT]]
    for index, column in enumerate(COLUMNS[:CONTENT]):
        if isinstance(values[index], str):
            values[index] = _capped(
                values[index], MAX_DETAIL_CHARS if column == "detail" else MAX_FIELD_CHARS
            )
    if entry.argv is not None:
        argv = json.dumps([_capped(str(a), MAX_FIELD_CHARS) for a in entry.argv][:64])
        values[COLUMNS.index("argv")] = argv
    return values


class AuditLog:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock | None = None) -> None:
        self._conn = conn
        self._lock = lock or threading.Lock()
        self._pending: queue.SimpleQueue[AuditEntry | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._idle = threading.Condition()
        self._hurry = threading.Event()  # a reader waits: write what is queued now
        self._unwritten = 0
        self.lost = 0  # entries a failed write dropped, since start
        self.tally: Counter[tuple[str, str]] = Counter()  # (action, outcome) since start: metrics
        self.last_error: str | None = None
        self._last_hash: str | None = None  # the newest entry's hash, read at the first write
        self._recent: OrderedDict[tuple[Any, ...], tuple[int, float]] = OrderedDict()  # key -> row, first ts

    def record(self, entry: AuditEntry) -> AuditEntry:
        """Write now and return with the entry committed."""
        self.tally[(entry.action, entry.outcome)] += 1
        with self._lock:
            entry.id = self._insert(_values(entry))
        return entry

    def _insert(self, values: list[Any]) -> int | None:
        """Insert one entry, linked to the one before (the lock is held)."""
        if self._last_hash is None:
            self._last_hash = chain.last_hash(self._conn)
        linked = dict(zip(COLUMNS[:CONTENT], values, strict=True))
        digest = chain.entry_hash(self._last_hash, linked)
        row = self._conn.execute(INSERT, [*values, self._last_hash, digest]).lastrowid
        self._last_hash = digest
        return row

    def verify(self) -> chain.Verdict:
        """Check the whole chain (see store/chain.py)."""
        self.flush()
        with self._lock:
            return chain.verify(self._conn)

    def record_soon(self, entry: AuditEntry) -> None:
        """Queue for a writer thread that commits in batches (within BATCH_WINDOW_S): for hot
        paths (one entry per network connection), where a commit each would cost more than
        the work audited. Readers flush first, so nothing queued is ever missing from what
        they see."""
        self.tally[(entry.action, entry.outcome)] += 1
        with self._idle:
            self._unwritten += 1
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_batches, name="audit-writer", daemon=True)
                self._writer.start()
        self._pending.put(entry)

    def flush(self) -> None:
        self._hurry.set()
        with self._idle:
            self._idle.wait_for(lambda: self._unwritten == 0, timeout=10)

    def _write_batches(self) -> None:
        while True:
            batch = [self._pending.get()]
            self._hurry.wait(BATCH_WINDOW_S)
            self._hurry.clear()
            while not self._pending.empty() and len(batch) < 500:
                batch.append(self._pending.get())
            chained = self._last_hash
            try:
                with self._lock:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._write(batch)
                    self._conn.execute("COMMIT")
            except Exception as exc:  # the writer must outlive any one batch
                # Not silent: the log says so, and `status` shows how many entries were lost.
                lost = sum(1 for e in batch if e is not None)
                self.lost += lost
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("audit write failed; %d entries lost: %s", lost, self.last_error)
                with self._lock:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    self._last_hash = chained  # the rolled-back entries are not in the chain
            finally:
                with self._idle:
                    self._unwritten -= len(batch)
                    self._idle.notify_all()

    def _write(self, batch: list[AuditEntry | None]) -> None:
        """Insert each new entry; count a repeat on its first's row (see AGGREGATE_WINDOW_S)."""
        repeats: dict[int, tuple[int, float]] = {}  # row -> repeats to add, last ts
        for entry in batch:
            if entry is None:
                continue
            values = _values(entry)
            key = tuple(values[1:])  # all but ts
            # An approval's steps stay apart, in order: there are few (pending approvals are capped).
            seen = None if entry.outcome in UNAGGREGATED else self._recent.get(key)
            if seen is not None and entry.ts - seen[1] <= AGGREGATE_WINDOW_S:
                added, _ = repeats.get(seen[0], (0, 0.0))
                repeats[seen[0]] = (added + 1, entry.ts)
                continue
            row = self._insert(values)
            if row is not None:
                self._recent[key] = (row, entry.ts)
                self._recent.move_to_end(key)
                while len(self._recent) > RECENT_KEYS:
                    self._recent.popitem(last=False)
        for row, (added, last) in repeats.items():
            self._conn.execute(
                "UPDATE audit SET repeats = repeats + ?, last_ts = ? WHERE id = ?", (added, last, row)
            )

    def prune(self, before: float) -> int:
        """Drop entries older than `before` (a timestamp); returns how many went."""
        self.flush()
        with self._lock:
            # A prefix of the chain, so what stays still links to the anchor: everything up
            # to the newest entry older than `before`.
            row = self._conn.execute("SELECT MAX(id) FROM audit WHERE ts < ?", (before,)).fetchone()
            if row is None or row[0] is None:
                return 0
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                chain.move_anchor(self._conn, row[0])
                cur = self._conn.execute("DELETE FROM audit WHERE id <= ?", (row[0],))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return cur.rowcount

    def entries(self, sandbox: str | None = None, limit: int = 100) -> list[AuditEntry]:
        self.flush()
        query = "SELECT * FROM audit"
        params: list[Any] = []
        if sandbox is not None:
            query += " WHERE sandbox = ?"
            params.append(sandbox)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._conn.execute(query, params).fetchall()
        out = []
        for row in reversed(rows):
            data = dict(row)
            data["argv"] = json.loads(data["argv"]) if data["argv"] else None
            out.append(AuditEntry(**data))
        return out
