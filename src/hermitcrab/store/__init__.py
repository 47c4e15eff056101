"""SQLite (WAL) persistence: sessions and their event logs, sandbox records, the audit log."""

from hermitcrab.store.audit import AuditEntry, AuditLog
from hermitcrab.store.db import open_database
from hermitcrab.store.sandboxes import SandboxRecord, SandboxRecords
from hermitcrab.store.sessions import Event, Session, SessionStore
from hermitcrab.store.store import Store

__all__ = [
    "AuditEntry",
    "AuditLog",
    "Event",
    "SandboxRecord",
    "SandboxRecords",
    "Session",
    "SessionStore",
    "Store",
    "open_database",
]
