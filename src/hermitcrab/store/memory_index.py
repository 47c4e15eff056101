"""The memory index: each agent's memory files, line by line, in SQLite FTS5 (BM25 ranking,
Porter stemming) and, where an embedding model is installed, a vector a line; with the
stamp of each file as it was indexed, so that only files that changed are read again. The
Markdown files stay the truth; this is rebuilt from them."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


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
class Vectors:
    """A file's line vectors, as the embedding model `model` made them (bytes each)."""

    model: str
    by_line: dict[int, tuple[bytes, bytes]]  # line: (digest of its text, vector)


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

        self._changes = 0  # this process's writes; PRAGMA data_version tells of others'
        # What the memory room derives from this index (the vectors as one matrix), kept
        # with it and checked against version() before use.
        self.derived: dict[str, Any] = {}

    def stamps(self, agent: str) -> dict[str, tuple[tuple[int, int], str]]:
        """Each indexed file's (mtime_ns, size) when it was indexed, and the model that
        made its vectors ('' for none)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, mtime_ns, size, embedded_by FROM memory_files WHERE agent = ?", (agent,)
            ).fetchall()
        return {r[0]: ((int(r[1]), int(r[2])), r[3]) for r in rows}

    def replace(
        self,
        agent: str,
        path: str,
        stamp: tuple[int, int],
        chunks: list[Chunk],
        vectors: Vectors | None = None,
    ) -> None:
        """A file's lines (and their vectors), all at once: nobody searches a half-indexed file."""
        with self._lock, _transaction(self._conn):
            self._changes += 1
            self._conn.execute("DELETE FROM memory_fts WHERE agent = ? AND path = ?", (agent, path))
            self._conn.execute("DELETE FROM memory_vectors WHERE agent = ? AND path = ?", (agent, path))
            self._conn.executemany(
                "INSERT INTO memory_fts (text, heading, agent, path, line) VALUES (?, ?, ?, ?, ?)",
                [(c.text, c.heading, agent, path, c.line) for c in chunks],
            )
            if vectors is not None:
                self._conn.executemany(
                    "INSERT INTO memory_vectors (agent, path, line, digest, vector) VALUES (?, ?, ?, ?, ?)",
                    [(agent, path, line, d, v) for line, (d, v) in vectors.by_line.items()],
                )
            self._conn.execute(
                """INSERT INTO memory_files (agent, path, mtime_ns, size, indexed_at, embedded_by)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (agent, path) DO UPDATE SET mtime_ns = excluded.mtime_ns,
                       size = excluded.size, indexed_at = excluded.indexed_at,
                       embedded_by = excluded.embedded_by""",
                (agent, path, stamp[0], stamp[1], time.time(), vectors.model if vectors else ""),
            )

    def forget(self, agent: str, path: str) -> None:
        with self._lock, _transaction(self._conn):
            self._changes += 1
            self._conn.execute("DELETE FROM memory_fts WHERE agent = ? AND path = ?", (agent, path))
            self._conn.execute("DELETE FROM memory_vectors WHERE agent = ? AND path = ?", (agent, path))
            self._conn.execute("DELETE FROM memory_files WHERE agent = ? AND path = ?", (agent, path))

    def known_vectors(self, agent: str, digests: list[bytes]) -> dict[bytes, bytes]:
        """Vectors already made for these texts (by digest): an edited file's unchanged lines
        are not embedded again."""
        found: dict[bytes, bytes] = {}
        with self._lock:
            for start in range(0, len(digests), 500):
                part = digests[start : start + 500]
                marks = ",".join("?" * len(part))
                found.update(
                    self._conn.execute(
                        f"SELECT digest, vector FROM memory_vectors WHERE agent = ? AND digest IN ({marks})",
                        (agent, *part),
                    ).fetchall()
                )
        return found

    def version(self) -> tuple[int, int]:
        """Changes whenever the index may have: a cache of it is good while this holds."""
        with self._lock:
            return self._changes, int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def all_vectors(self, agent: str) -> list[tuple[str, int, str, str, bytes]]:
        """Every vectored line of an agent: (path, line, heading, text, vector)."""
        with self._lock:
            texts = {
                (r[0], int(r[1])): (r[2], r[3])
                for r in self._conn.execute(
                    "SELECT path, line, heading, text FROM memory_fts WHERE agent = ?", (agent,)
                )
            }
            rows = self._conn.execute(
                "SELECT path, line, vector FROM memory_vectors WHERE agent = ?", (agent,)
            ).fetchall()
        out = []
        for path, line, vector in rows:
            heading, text = texts.get((path, int(line)), ("", ""))
            out.append((path, int(line), heading, text, vector))
        return out

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
