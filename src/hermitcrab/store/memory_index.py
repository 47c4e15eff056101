"""The memory index: each agent's memory files, line by line, in SQLite FTS5 (BM25 ranking,
Porter stemming), with the stamp of each file as it was indexed, so that only files that
changed are read again. The Markdown files stay the truth; this is rebuilt from them."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class Chunk:
    line: int  # 1-based, in its file
    heading: str  # the nearest heading above it: context, not searched
    text: str


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    heading: str
    text: str
    bm25: float  # FTS5's rank: lower is better


class MemoryIndex:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def stamps(self, agent: str) -> dict[str, tuple[int, int]]:
        """Each indexed file's (mtime_ns, size) when it was indexed."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, mtime_ns, size FROM memory_files WHERE agent = ?", (agent,)
            ).fetchall()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def replace(self, agent: str, path: str, stamp: tuple[int, int], chunks: list[Chunk]) -> None:
        """A file's lines, all at once: nobody searches a half-indexed file."""
        with self._lock, _transaction(self._conn):
            self._conn.execute("DELETE FROM memory_fts WHERE agent = ? AND path = ?", (agent, path))
            self._conn.executemany(
                "INSERT INTO memory_fts (text, heading, agent, path, line) VALUES (?, ?, ?, ?, ?)",
                [(c.text, c.heading, agent, path, c.line) for c in chunks],
            )
            self._conn.execute(
                """INSERT INTO memory_files (agent, path, mtime_ns, size, indexed_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (agent, path) DO UPDATE SET mtime_ns = excluded.mtime_ns,
                       size = excluded.size, indexed_at = excluded.indexed_at""",
                (agent, path, stamp[0], stamp[1], time.time()),
            )

    def forget(self, agent: str, path: str) -> None:
        with self._lock, _transaction(self._conn):
            self._conn.execute("DELETE FROM memory_fts WHERE agent = ? AND path = ?", (agent, path))
            self._conn.execute("DELETE FROM memory_files WHERE agent = ? AND path = ?", (agent, path))

    def search(self, agent: str, match: str, limit: int) -> list[Hit]:
        """`match` is an FTS5 query the caller built (its terms quoted)."""
        with self._lock:
            rows = self._conn.execute(
                """SELECT path, line, heading, text, rank FROM memory_fts
                   WHERE memory_fts MATCH ? AND agent = ? ORDER BY rank LIMIT ?""",
                (match, agent, limit),
            ).fetchall()
        return [Hit(r[0], int(r[1]), r[2], r[3], float(r[4])) for r in rows]

    def count(self, agent: str) -> int:
        with self._lock:
            return int(
                self._conn.execute("SELECT COUNT(*) FROM memory_fts WHERE agent = ?", (agent,)).fetchone()[0]
            )
