"""SQLite (WAL) persistence: sessions and their append-only event logs."""

from hermitcrab.store.db import open_database
from hermitcrab.store.sessions import Event, Session, SessionStore

__all__ = ["Event", "Session", "SessionStore", "open_database"]
