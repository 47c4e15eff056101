"""Sessions and their append-only event logs.

An event is written and committed before anything acts on it; nothing is ever updated
in place, so the log is the history.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hermitcrab.errors import StoreError
from hermitcrab.store.db import GroupCommit

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")

# Event kinds. A 'message' is answered by exactly one 'reply' or 'turn.failed'; the steps
# in between are events too, each committed before the next step acts on it.
MESSAGE = "message"
TURN_STARTED = "turn.started"
MODEL_RESPONSE = "model.response"  # the model's parts: text and tool calls
TOOL_CALL = "tool.call"  # committed before the tool runs; its event id is the idempotency key
APPROVAL_ASKED = "approval.asked"
APPROVAL_DECIDED = "approval.decided"
TOOL_RESULT = "tool.result"
AGENT_MESSAGE = "agent.message"  # what send_message said, before the reply
REPLY = "reply"
TURN_FAILED = "turn.failed"
COMPACTION = "compaction"  # older exchanges summarised into a note; see agent/compaction.py
ANSWERS = (REPLY, TURN_FAILED)


@dataclass(frozen=True)
class Event:
    id: int
    session_id: str
    kind: str
    data: dict[str, Any]
    created_at: float
    reply_to: int | None = None
    duplicate: bool = False  # a message taken once already (same source_id): no new turn

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "kind": self.kind,
            "reply_to": self.reply_to,
            "data": self.data,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Session:
    id: str
    agent: str
    created_at: float
    updated_at: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **self.extra,
        }


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.match(session_id):
        raise StoreError(
            f"invalid session id {session_id!r}: use 1-128 letters, digits or . _ : @ -, "
            "starting with a letter or digit"
        )
    return session_id


class SessionStore:
    """Thread-safe access to sessions and events over one SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock | None = None) -> None:
        self._conn = conn
        self._lock = lock or threading.Lock()  # shared by every user of this connection
        self._group = GroupCommit(conn, self._lock)  # appends from many turns share a commit

    def close(self) -> None:
        self.close_commits()
        with self._lock:
            self._conn.close()

    def close_commits(self) -> None:
        """Commit what is pending and stop the committer (the connection stays open)."""
        self._group.close()

    def ensure_session(self, session_id: str, agent: str) -> Session:
        check_session_id(session_id)
        with self._lock:  # most messages go to a session that exists: no write for those
            row = self._conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is not None:
            return _session(row)
        now = time.time()

        def create(conn: sqlite3.Connection) -> sqlite3.Row:
            conn.execute(
                "INSERT OR IGNORE INTO sessions (id, agent, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (session_id, agent, now, now),
            )
            return conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()

        return _session(self._group.run(create))

    def get_session(self, session_id: str) -> Session | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return _session(row) if row else None

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def list_sessions(self) -> list[Session]:
        with self._lock:
            rows = self._conn.execute(
                """SELECT s.*, (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id) AS events
                   FROM sessions s ORDER BY s.updated_at DESC"""
            ).fetchall()
        return [_session(r, extra={"events": r["events"]}) for r in rows]

    def append(self, session_id: str, kind: str, data: dict[str, Any], reply_to: int | None = None) -> Event:
        """Append one event and return once it is committed (durable before visible)."""
        return self._group.run(self._appending(session_id, kind, data, reply_to))

    def append_async(
        self, session_id: str, kind: str, data: dict[str, Any], reply_to: int | None = None
    ) -> asyncio.Future[Event]:
        """`append` for the event loop (`store.aio` prefers it): submitted at once, in
        order before anything submitted later, and awaited without a thread of its own."""
        return self._group.run_async(self._appending(session_id, kind, data, reply_to))

    def _appending(
        self, session_id: str, kind: str, data: dict[str, Any], reply_to: int | None
    ) -> Callable[[sqlite3.Connection], Event]:
        now = time.time()
        payload = json.dumps(data, ensure_ascii=False)

        def insert(conn: sqlite3.Connection) -> Event:
            cur = conn.execute(
                "INSERT INTO events (session_id, kind, reply_to, data, created_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, kind, reply_to, payload, now),
            )
            conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
            return Event(int(cur.lastrowid or 0), session_id, kind, data, now, reply_to)

        return insert

    def append_inbound(
        self, session_id: str, data: dict[str, Any], source_id: str | None
    ) -> tuple[Event, bool]:
        """Append an inbound message once per `source_id` (its channel's or client's id for
        it): a second delivery returns the first event and False, and starts no turn."""
        if source_id is None:
            return self.append(session_id, MESSAGE, data), True
        return self._group.run(self._inbound(session_id, data, source_id))

    async def append_inbound_async(
        self, session_id: str, data: dict[str, Any], source_id: str | None
    ) -> tuple[Event, bool]:
        if source_id is None:
            return await self.append_async(session_id, MESSAGE, data), True
        return await self._group.run_async(self._inbound(session_id, data, source_id))

    def _inbound(
        self, session_id: str, data: dict[str, Any], source_id: str
    ) -> Callable[[sqlite3.Connection], tuple[Event, bool]]:
        now = time.time()
        payload = json.dumps(data, ensure_ascii=False)

        def insert_once(conn: sqlite3.Connection) -> tuple[Event, bool]:
            row = conn.execute(
                "SELECT * FROM events WHERE session_id = ? AND source_id = ?", (session_id, source_id)
            ).fetchone()
            if row is not None:
                return _event(row), False
            cur = conn.execute(
                """INSERT INTO events (session_id, kind, reply_to, data, created_at, source_id)
                   VALUES (?, ?, NULL, ?, ?, ?)""",
                (session_id, MESSAGE, payload, now, source_id),
            )
            conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
            return Event(int(cur.lastrowid or 0), session_id, MESSAGE, data, now, None), True

        return insert_once

    def by_source_prefix(self, session_id: str, prefix: str) -> list[tuple[str, int, str]]:
        """(source_id, event id, session) of the session's messages whose source id starts
        with `prefix` (a job's runs: "job:ID:")."""
        with self._lock:
            rows = self._conn.execute(
                """SELECT source_id, id, session_id FROM events
                   WHERE session_id = ? AND source_id >= ? AND source_id < ?""",
                (session_id, prefix, prefix + "\uffff"),
            ).fetchall()
        return [(r["source_id"], r["id"], r["session_id"]) for r in rows]

    def events(self, session_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM events WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
                (session_id, after, limit),
            ).fetchall()
        return [_event(r) for r in rows]

    def turn_events(self, session_id: str, message_id: int) -> list[Event]:
        """The events of the turn that answers `message_id`, in order (to resume it)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM events WHERE session_id = ? AND reply_to = ? ORDER BY id",
                (session_id, message_id),
            ).fetchall()
        return [_event(r) for r in rows]

    def conversation(
        self, session_id: str, before: int, limit: int, after: int = 0
    ) -> list[tuple[Event, Event]]:
        """The last `limit` answered exchanges (message, reply) whose message came before
        event `before` (and after event `after`), oldest first. Pairing by reply_to keeps
        the order right even when a message was queued while an earlier turn was running."""
        with self._lock:
            rows = self._conn.execute(
                """SELECT m.id, m.session_id, m.kind, m.reply_to, m.data, m.created_at,
                          r.id AS r_id, r.kind AS r_kind, r.reply_to AS r_reply_to,
                          r.data AS r_data, r.created_at AS r_created_at
                   FROM events m JOIN events r ON r.reply_to = m.id AND r.kind = ?
                   WHERE m.session_id = ? AND m.kind = ? AND m.id < ? AND m.id > ?
                   ORDER BY m.id DESC LIMIT ?""",
                (REPLY, session_id, MESSAGE, before, after, limit),
            ).fetchall()
        pairs = []
        for row in reversed(rows):
            reply = Event(
                row["r_id"],
                session_id,
                row["r_kind"],
                json.loads(row["r_data"]),
                row["r_created_at"],
                row["r_reply_to"],
            )
            pairs.append((_event(row), reply))
        return pairs

    def since_compaction(
        self, session_id: str, before: int, limit: int
    ) -> tuple[Event | None, list[tuple[Event, Event]]]:
        """The session's last compaction note and the exchanges after it (before event
        `before`): what a turn's history is made of, in one visit to the store."""
        note = self.latest(session_id, COMPACTION)
        after = int(note.data.get("through", 0)) if note is not None else 0
        return note, self.conversation(session_id, before, limit, after=after)

    def latest(self, session_id: str, kind: str) -> Event | None:
        """The session's last event of this kind (turns run one at a time per session, so
        no later turn's event can be among them yet)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM events WHERE session_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                (session_id, kind),
            ).fetchone()
        return _event(row) if row else None

    def unanswered(self) -> list[Event]:
        """Messages with no reply yet, oldest first: the turns a restart must resume."""
        with self._lock:
            rows = self._conn.execute(
                f"""SELECT * FROM events m WHERE m.kind = ? AND NOT EXISTS (
                        SELECT 1 FROM events r WHERE r.reply_to = m.id AND r.kind IN ({_marks(ANSWERS)}))
                    ORDER BY m.id""",
                (MESSAGE, *ANSWERS),
            ).fetchall()
        return [_event(r) for r in rows]


def _marks(items: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in items)


def _session(row: sqlite3.Row, extra: dict[str, Any] | None = None) -> Session:
    return Session(row["id"], row["agent"], row["created_at"], row["updated_at"], extra or {})


def _event(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        session_id=row["session_id"],
        kind=row["kind"],
        data=json.loads(row["data"]),
        created_at=row["created_at"],
        reply_to=row["reply_to"],
    )
