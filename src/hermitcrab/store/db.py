"""The one place a SQLite connection is made (swap the driver here, e.g. for sqlite-vec)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hermitcrab.errors import StoreError
from hermitcrab.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 5000


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the store; WAL so readers never block the writer."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (got {mode}); is it on a network filesystem?")
        # FULL: a message we acknowledged survives power loss, not only a crash of ours.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path}: cannot open the store: {exc}. fix: move the file aside and restart "
            "(a new, empty store is created), or restore it from a backup"
        ) from None


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(MIGRATIONS):
        raise StoreError(
            f"{path}: store schema version {current} is newer than this HermitCrab knows "
            f"({len(MIGRATIONS)}). fix: upgrade hermitcrab"
        )
    for version in range(current, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT on its own; splitting keeps each migration one transaction.
    return [s.strip() for s in script.split(";") if s.strip()]
