"""One agent's rows, carried between stores: copied out whole (SQLite's online backup, so a
store in use gives a consistent copy), everything not the agent's dropped from the copy;
then put into another store in one transaction, with new row ids where ids are counted
(events, jobs, their runs, usage) and every reference to them mapped.

What is an agent's: its sessions and their events, the approvals asked in them, its jobs
and their runs, its memory index (files, text, vectors), its workspace files' taint marks,
its usage. The audit log (a hash chain of this machine's), sandbox records (paths of this
machine's) and chat pairings (a channel's, not an agent's) stay behind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from hermitcrab.errors import StoreError
from hermitcrab.store.db import open_database

SESSIONS = "session_id IN (SELECT id FROM sessions)"
# Table: which rows of the copy are the agent's (after the sessions are narrowed first).
KEPT: dict[str, str] = {
    "sessions": "agent = :agent",
    "events": SESSIONS,
    "approvals": SESSIONS,
    "jobs": "agent = :agent",
    "job_runs": "job_id IN (SELECT id FROM jobs)",
    "file_marks": "agent = :agent",
    "memory_files": "agent = :agent",
    "memory_fts": "agent = :agent",
    "memory_vectors": "agent = :agent",
    "usage": "agent = :agent",
}
COUNTED = ("sessions", "events", "approvals", "jobs", "job_runs", "memory_files", "memory_vectors", "usage")


def export_rows(store: Path, agent: str, out: Path) -> dict[str, int]:
    """Write the agent's rows to `out` (a store of the same schema); returns the counts."""
    source = sqlite3.connect(store)
    copy = sqlite3.connect(out, isolation_level=None)
    try:
        source.backup(copy)
        tables = store_tables(copy)
        copy.execute("BEGIN")
        for table in sorted(tables, key=lambda t: t != "sessions"):  # sessions first: others follow them
            where = KEPT.get(table)
            if where is None:
                copy.execute(f"DELETE FROM {table}")
            else:
                copy.execute(f"DELETE FROM {table} WHERE NOT ({where})", {"agent": agent})
        copy.execute("COMMIT")
        copy.execute("VACUUM")
        return {table: copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in COUNTED}
    finally:
        copy.close()
        source.close()


def store_tables(conn: sqlite3.Connection) -> list[str]:
    """The store's own tables (not SQLite's, not the full-text index's shadow tables)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE 'memory_fts_%'"
    ).fetchall()
    return [r[0] for r in rows]


def import_rows(store: Path, snapshot: Path, agent: str) -> dict[str, int]:
    """Put a snapshot's rows into `store` (which nothing else has open). Refused, with nothing
    changed, when the store already holds any of them: the same session or approval, or
    anything of this agent's."""
    open_database(snapshot).close()  # an older snapshot is migrated to this schema; a newer refused
    conn = open_database(store)
    try:
        conn.execute("ATTACH DATABASE ? AS snap", (str(snapshot),))
        clashes = _clashes(conn, agent)
        if clashes:
            raise StoreError(
                f"{store}: this store already holds {'; '.join(clashes)}. fix: import into a home without "
                f"agent {agent!r}'s data (a new HERMITCRAB_HOME), or remove it there first"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            counts = _copy(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return counts
    finally:
        conn.close()


def _clashes(conn: sqlite3.Connection, agent: str) -> list[str]:
    found = []
    same = conn.execute(
        "SELECT id FROM sessions WHERE id IN (SELECT id FROM snap.sessions) LIMIT 5"
    ).fetchall()
    if same:
        found.append("sessions " + ", ".join(r[0] for r in same))
    same = conn.execute(
        "SELECT id FROM approvals WHERE id IN (SELECT id FROM snap.approvals) LIMIT 5"
    ).fetchall()
    if same:
        found.append("approvals " + ", ".join(r[0] for r in same))
    for table in ("sessions", "jobs", "memory_files"):
        if conn.execute(f"SELECT 1 FROM {table} WHERE agent = ? LIMIT 1", (agent,)).fetchone():
            found.append(f"{table} of agent {agent!r}")
    return found


def _columns(conn: sqlite3.Connection, table: str, without: str | None = None) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA snap.table_info({table})") if r[1] != without]


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    names = list(row)
    cursor = conn.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        [row[n] for n in names],
    )
    return int(cursor.lastrowid or 0)


def _fields(row: sqlite3.Row, without: str | None = None) -> dict[str, Any]:
    fields = dict(row)
    fields.pop(without or "", None)
    return fields


def _remapped(text: str | None, events: dict[int, int]) -> str | None:
    """A JSON payload whose `call_event` (an event id) is mapped to the new one."""
    if not text or "call_event" not in text:
        return text
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("call_event"), int):
        data["call_event"] = events.get(data["call_event"], data["call_event"])
        return json.dumps(data)
    return text


def _copy(conn: sqlite3.Connection) -> dict[str, int]:
    conn.row_factory = sqlite3.Row
    counts: dict[str, int] = {}
    columns = _columns(conn, "sessions")
    conn.execute(
        f"INSERT INTO sessions ({', '.join(columns)}) SELECT {', '.join(columns)} FROM snap.sessions"
    )
    events: dict[int, int] = {}
    for row in conn.execute("SELECT * FROM snap.events ORDER BY id").fetchall():
        fields = _fields(row, "id")
        fields["reply_to"] = events.get(row["reply_to"]) if row["reply_to"] is not None else None
        fields["data"] = _remapped(fields["data"], events)
        events[row["id"]] = _insert(conn, "events", fields)
    for row in conn.execute("SELECT * FROM snap.approvals").fetchall():
        fields = _fields(row)
        fields["subject"] = _remapped(fields["subject"], events)
        _insert(conn, "approvals", fields)
    jobs: dict[int, int] = {}
    for row in conn.execute("SELECT * FROM snap.jobs ORDER BY id").fetchall():
        jobs[row["id"]] = _insert(conn, "jobs", _fields(row, "id"))
    for row in conn.execute("SELECT * FROM snap.job_runs ORDER BY id").fetchall():
        fields = _fields(row, "id")
        fields["job_id"] = jobs[row["job_id"]]
        _insert(conn, "job_runs", fields)
    for table, skip in (
        ("usage", "id"),
        ("file_marks", None),
        ("memory_files", None),
        ("memory_vectors", None),
    ):
        names = _columns(conn, table, skip)
        conn.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(names)} FROM snap.{table}")
    conn.execute(
        "INSERT INTO memory_fts (text, heading, agent, path, line) "
        "SELECT text, heading, agent, path, line FROM snap.memory_fts"
    )
    for table in COUNTED:
        counts[table] = conn.execute(f"SELECT count(*) FROM snap.{table}").fetchone()[0]
    return counts
