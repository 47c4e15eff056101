"""The audit log: every decision and every exec, who asked, what rule decided, what happened."""

from __future__ import annotations

import json
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


class AuditLog:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock | None = None) -> None:
        self._conn = conn
        self._lock = lock or threading.Lock()

    def record(self, entry: AuditEntry) -> AuditEntry:
        values = [getattr(entry, c) for c in COLUMNS]
        values[COLUMNS.index("argv")] = json.dumps(entry.argv) if entry.argv is not None else None
        with self._lock:
            cur = self._conn.execute(
                f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                values,
            )
        entry.id = cur.lastrowid
        return entry

    def entries(self, sandbox: str | None = None, limit: int = 100) -> list[AuditEntry]:
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
