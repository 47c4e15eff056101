"""What the agent's tools leave behind: durable jobs, and taint marks on workspace files."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    id: int
    agent: str
    session_id: str
    text: str
    run_at: float | None
    cron: str | None
    tainted: bool
    created_by: str
    created_at: float
    state: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Jobs:
    """Jobs the `schedule` tool records; the scheduler runs them."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def add(
        self,
        agent: str,
        session_id: str,
        text: str,
        *,
        run_at: float | None,
        cron: str | None,
        tainted: bool,
        created_by: str,
    ) -> Job:
        now = time.time()
        with self._lock:
            cur = self._conn.execute(
                """INSERT INTO jobs (agent, session_id, text, run_at, cron, tainted, created_by, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (agent, session_id, text, run_at, cron, int(tainted), created_by, now),
            )
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _job(row)

    def all(self, agent: str | None = None) -> list[Job]:
        with self._lock:
            if agent is None:
                rows = self._conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM jobs WHERE agent = ? ORDER BY id", (agent,)
                ).fetchall()
        return [_job(r) for r in rows]


def _job(row: sqlite3.Row) -> Job:
    return Job(
        row["id"],
        row["agent"],
        row["session_id"],
        row["text"],
        row["run_at"],
        row["cron"],
        bool(row["tainted"]),
        row["created_by"],
        row["created_at"],
        row["state"],
    )


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
