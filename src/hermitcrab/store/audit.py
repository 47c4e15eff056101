"""The audit log: every decision and every exec, who asked, what rule decided, what happened."""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = (
    "ts", "actor", "sandbox", "action", "argv", "cwd", "policy_version", "rule",
    "outcome", "exit_code", "duration_ms", "bytes_out", "killed_by", "detail",
)  # fmt: skip


# Queued entries wait this long to be written together: one commit for a burst of network
# connections, rather than a commit (and a busy writer thread) racing each connection.
BATCH_WINDOW_S = 0.05

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
    values = [getattr(entry, c) for c in COLUMNS]
    for index, column in enumerate(COLUMNS):
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

    def record(self, entry: AuditEntry) -> AuditEntry:
        """Write now and return with the entry committed."""
        with self._lock:
            cur = self._conn.execute(INSERT, _values(entry))
        entry.id = cur.lastrowid
        return entry

    def record_soon(self, entry: AuditEntry) -> None:
        """Queue for a writer thread that commits in batches (within BATCH_WINDOW_S): for hot
        paths (one entry per network connection), where a commit each would cost more than
        the work audited. Readers flush first, so nothing queued is ever missing from what
        they see."""
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
            try:
                with self._lock:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.executemany(INSERT, [_values(e) for e in batch if e is not None])
                    self._conn.execute("COMMIT")
            except sqlite3.Error:
                with self._lock:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
            finally:
                with self._idle:
                    self._unwritten -= len(batch)
                    self._idle.notify_all()

    def prune(self, before: float) -> int:
        """Drop entries older than `before` (a timestamp); returns how many went."""
        self.flush()
        with self._lock:
            cur = self._conn.execute("DELETE FROM audit WHERE ts < ?", (before,))
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
