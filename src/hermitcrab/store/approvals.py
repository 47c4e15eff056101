"""The approval inbox on disk: a restart neither loses a held decision nor approves one."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

from hermitcrab.store.db import Writer, WritesSoon


class ApprovalRecords(WritesSoon):
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock, writer: Writer | None = None) -> None:
        self._writer = writer
        self._conn = conn
        self._lock = lock

    def put_soon(self, *args: Any) -> None:
        """`put`, on the store's writer thread: for callers on the event loop."""
        self._soon(self.put, *args)

    def put(self, item: dict[str, Any]) -> None:
        """Insert or update one approval (its id, kind, sandbox, session, subject, state...)."""
        with self._lock:
            self._conn.execute(
                """INSERT INTO approvals (id, kind, sandbox, session_id, subject, state, always, decided_by,
                                          reason, created_at, expires_at, decided_at)
                   VALUES (:id, :kind, :sandbox, :session_id, :subject, :state, :always, :decided_by,
                           :reason, :created_at, :expires_at, :decided_at)
                   ON CONFLICT (id) DO UPDATE SET state = excluded.state, always = excluded.always,
                       decided_by = excluded.decided_by, reason = excluded.reason,
                       decided_at = excluded.decided_at""",
                {
                    **item,
                    "subject": json.dumps(item["subject"]),
                    "always": int(item["always"]),
                    "decided_at": time.time() if item["state"] != "pending" else None,
                },
            )

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        self._drain()
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM approvals ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_item(r) for r in reversed(rows)]

    def close_pending(self, reason: str) -> list[dict[str, Any]]:
        """Deny what a previous run left pending (nobody can answer it any more)."""
        self._drain()
        with self._lock:
            rows = self._conn.execute("SELECT * FROM approvals WHERE state = 'pending'").fetchall()
            self._conn.execute(
                "UPDATE approvals SET state = 'expired', reason = ?, decided_at = ? WHERE state = 'pending'",
                (reason, time.time()),
            )
        return [{**_item(r), "state": "expired", "reason": reason} for r in rows]


def _item(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    item["subject"] = json.loads(item["subject"])
    item["always"] = bool(item["always"])
    return item
