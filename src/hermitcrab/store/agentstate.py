"""What the agent's tools leave behind: taint marks on workspace files (jobs: store/jobs.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FileMark:
    tainted: bool
    source: str | None
    mtime_ns: int  # the file as it was written; changed since, the mark says nothing


class FileMarks:
    """Per agent and workspace path: was it last written by the agent, in a tainted turn or
    not? Taint outlives the turn through these: a later turn that reads a tainted file is
    tainted too."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def mark(
        self, agent: str, path: str, tainted: bool, source: str | None, session_id: str, mtime_ns: int
    ) -> None:
        with self._lock:
            self._conn.execute(
                """INSERT INTO file_marks (agent, path, tainted, source, session_id, mtime_ns, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (agent, path) DO UPDATE SET tainted = excluded.tainted,
                       source = excluded.source, session_id = excluded.session_id,
                       mtime_ns = excluded.mtime_ns, updated_at = excluded.updated_at""",
                (agent, path, int(tainted), source, session_id, mtime_ns, time.time()),
            )

    def get(self, agent: str, path: str) -> FileMark | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT tainted, source, mtime_ns FROM file_marks WHERE agent = ? AND path = ?", (agent, path)
            ).fetchone()
        return FileMark(bool(row["tainted"]), row["source"], row["mtime_ns"]) if row else None

    def all(self, agent: str) -> dict[str, FileMark]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, tainted, source, mtime_ns FROM file_marks WHERE agent = ?", (agent,)
            ).fetchall()
        return {r["path"]: FileMark(bool(r["tainted"]), r["source"], r["mtime_ns"]) for r in rows}
