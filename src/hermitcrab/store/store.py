"""One database, its tables' access objects, and the one lock they share."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from hermitcrab.store.agentstate import FileMarks
from hermitcrab.store.aio import AsyncStore
from hermitcrab.store.approvals import ApprovalRecords
from hermitcrab.store.audit import AuditLog
from hermitcrab.store.db import Writer, open_database
from hermitcrab.store.jobs import Jobs
from hermitcrab.store.memory_index import MemoryIndex
from hermitcrab.store.pairing import Cursors, Pairings
from hermitcrab.store.sandboxes import SandboxRecords
from hermitcrab.store.sessions import SessionStore
from hermitcrab.store.usage import UsageLog


def is_url(where: Path | str) -> bool:
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


class Store:
    """`where`: the embedded store's file, or a PostgreSQL URL (postgresql://...)."""

    def __init__(self, where: Path | str) -> None:
        self.path = where
        if is_url(where):
            from hermitcrab.store.pg import open_postgres

            self._conn: Any = open_postgres(str(where))
        else:
            self._conn = open_database(Path(where))
        lock = threading.Lock()  # sqlite3 connections must not be used by two threads at once
        # Writes from the event loop go to this thread (the audit log has a batching one of its own).
        self.writer = Writer()
        self.sessions = SessionStore(self._conn, lock)
        self.sandboxes = SandboxRecords(self._conn, lock, self.writer)
        self.audit = AuditLog(self._conn, lock)
        self.usage = UsageLog(self._conn, lock, self.writer)
        self.jobs = Jobs(self._conn, lock)
        self.file_marks = FileMarks(self._conn, lock)
        self.memory = MemoryIndex(self._conn, lock)
        self.approvals = ApprovalRecords(self._conn, lock, self.writer)
        self.pairing = Pairings(self._conn, lock)
        self.cursors = Cursors(self._conn, lock)
        self._lock = lock
        self.aio = AsyncStore(self)  # the same tables, awaited: what async code speaks

    def close(self) -> None:
        self.writer.close()
        self.audit.flush()
        self.sessions.close_commits()
        with self._lock:
            self._conn.close()
