"""Schema migrations, applied in order; PRAGMA user_version records how far a database is."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and their append-only event log
    """
    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        agent      TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        kind       TEXT NOT NULL,
        reply_to   INTEGER REFERENCES events(id),
        data       TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX events_by_session ON events(session_id, id);
    CREATE INDEX events_by_reply ON events(reply_to) WHERE reply_to IS NOT NULL;
    """,
)
