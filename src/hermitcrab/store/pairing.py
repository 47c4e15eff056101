"""Who may talk to the agent on a chat channel. A stranger's first message gets a short
pairing code and nothing else; the owner approves the code (as the owner on that channel,
or as a guest) or lets it expire; an approved sender may be revoked."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed on a phone
CODE_LENGTH = 6
CODE_SECONDS = 3600.0
PENDING, APPROVED, REVOKED = "pending", "approved", "revoked"
OWNER, GUEST = "owner", "guest"


@dataclass(frozen=True)
class Sender:
    channel: str
    sender: str
    name: str
    code: str
    state: str
    role: str | None
    asked_at: float
    expires_at: float
    decided_at: float | None
    decided_by: str | None

    @property
    def approved(self) -> bool:
        return self.state == APPROVED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PairingError(Exception):
    pass


class Pairings:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn, self._lock = conn, lock

    def get(self, channel: str, sender: str) -> Sender | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM channel_senders WHERE channel = ? AND sender = ?", (channel, sender)
            ).fetchone()
        return Sender(*row) if row else None

    def ask(self, channel: str, sender: str, name: str, now: float | None = None) -> Sender:
        """The sender's pending request: the same code while it lasts, a new one after."""
        now = time.time() if now is None else now
        known = self.get(channel, sender)
        if known is not None and (
            known.state == APPROVED or (known.state == PENDING and known.expires_at > now)
        ):
            return known
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        with self._lock:
            self._conn.execute(
                """INSERT INTO channel_senders
                       (channel, sender, name, code, state, role, asked_at, expires_at)
                   VALUES (?, ?, ?, ?, ?, NULL, ?, ?)
                   ON CONFLICT (channel, sender) DO UPDATE SET name = excluded.name, code = excluded.code,
                       state = excluded.state, role = NULL, asked_at = excluded.asked_at,
                       expires_at = excluded.expires_at, decided_at = NULL, decided_by = NULL""",
                (channel, sender, name[:100], code, PENDING, now, now + CODE_SECONDS),
            )
        found = self.get(channel, sender)
        assert found is not None
        return found

    def approve(self, code: str, role: str, by: str, now: float | None = None) -> Sender:
        now = time.time() if now is None else now
        code = code.strip().upper()
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM channel_senders WHERE code = ?", (code,)
            ).fetchone()
            if row is None:
                raise PairingError(
                    f"no pairing code {code!r}. fix: `hermitcrab pairing list` shows those waiting"
                )
            found = Sender(*row)
            if found.state != PENDING or found.expires_at <= now:
                why = "expired" if found.state == PENDING else found.state
                raise PairingError(
                    f"pairing code {code} is {why}; the sender gets a new one by writing again"
                )
            self._conn.execute(
                """UPDATE channel_senders SET state = ?, role = ?, decided_at = ?, decided_by = ?
                   WHERE channel = ? AND sender = ?""",
                (APPROVED, role, now, by, found.channel, found.sender),
            )
        approved = self.get(found.channel, found.sender)
        assert approved is not None
        return approved

    def revoke(self, channel: str, sender: str, by: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                """UPDATE channel_senders SET state = ?, decided_at = ?, decided_by = ?
                   WHERE channel = ? AND sender = ? AND state != ?""",
                (REVOKED, time.time(), by, channel, sender, REVOKED),
            )
        return cursor.rowcount > 0

    def all(self) -> list[Sender]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM channel_senders ORDER BY asked_at DESC"
            ).fetchall()
        return [Sender(*row) for row in rows]


_COLUMNS = "channel, sender, name, code, state, role, asked_at, expires_at, decided_at, decided_by"


class Cursors:
    """Where each channel's reading of its service stands."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn, self._lock = conn, lock

    def get(self, channel: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT cursor FROM channel_cursors WHERE channel = ?", (channel,)
            ).fetchone()
        return row[0] if row else None

    def set(self, channel: str, cursor: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO channel_cursors (channel, cursor, updated_at) VALUES (?, ?, ?) ON CONFLICT "
                "(channel) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                (channel, cursor, time.time()),
            )
