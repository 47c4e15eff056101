"""Records of sandboxes, so that they can be recreated as they were after a restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from hermitcrab.store.db import Writer, WritesSoon


@dataclass(frozen=True)
class SandboxRecord:
    name: str
    policy: str  # the policy file's text, as validated
    policy_hash: str
    workspace: str
    created_at: float
    updated_at: float
    follows_file: bool = True
    agent: str | None = None  # None: the default agent


class SandboxRecords(WritesSoon):
    def __init__(
        self, conn: sqlite3.Connection, lock: threading.Lock | None = None, writer: Writer | None = None
    ) -> None:
        self._writer = writer
        self._conn = conn
        self._lock = lock or threading.Lock()

    def put_soon(self, *args: Any) -> None:
        """`put`, on the store's writer thread: for callers on the event loop."""
        self._soon(self.put, *args)

    def put(
        self,
        name: str,
        policy: str,
        policy_hash: str,
        workspace: str,
        follows_file: bool = True,
        agent: str | None = None,
    ) -> SandboxRecord:
        now = time.time()
        with self._lock:
            self._conn.execute(
                """INSERT INTO sandboxes (name, policy, policy_hash, workspace, created_at, updated_at,
                                          follows_file, agent)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET policy = excluded.policy,
                       policy_hash = excluded.policy_hash, workspace = excluded.workspace,
                       updated_at = excluded.updated_at, follows_file = excluded.follows_file,
                       agent = excluded.agent""",
                (name, policy, policy_hash, workspace, now, now, int(follows_file), agent),
            )
        record = self.get(name)
        assert record is not None
        return record

    def get(self, name: str) -> SandboxRecord | None:
        self._drain()
        with self._lock:
            row = self._conn.execute("SELECT * FROM sandboxes WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def all(self) -> list[SandboxRecord]:
        self._drain()
        with self._lock:
            rows = self._conn.execute("SELECT * FROM sandboxes ORDER BY name").fetchall()
        return [_record(r) for r in rows]

    def delete(self, name: str) -> bool:
        self._drain()
        with self._lock:
            cur = self._conn.execute("DELETE FROM sandboxes WHERE name = ?", (name,))
        return cur.rowcount > 0


def _record(row: sqlite3.Row) -> SandboxRecord:
    data = dict(row)
    data["follows_file"] = bool(data["follows_file"])
    return SandboxRecord(**data)
