"""Usage of every model call: tokens, latency and cost, summed per session, agent and day."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from hermitcrab.store.db import Writer, WritesSoon

GROUPS = {"day": "day", "agent": "agent", "session": "session", "model": "model"}


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


class UsageLog(WritesSoon):
    def __init__(
        self, conn: sqlite3.Connection, lock: threading.Lock | None = None, writer: Writer | None = None
    ) -> None:
        self._writer = writer
        self._conn = conn
        self._lock = lock or threading.Lock()

    def record_soon(self, *args: Any) -> None:
        """`record`, on the store's writer thread: for callers on the event loop."""
        self._soon(self.record, *args)

    def record(
        self, agent: str, session: str | None, model: str, prompt: int, completion: int, latency_ms: float,
        cost_usd: float,
    ) -> None:  # fmt: skip
        now = time.time()
        with self._lock:
            self._conn.execute(
                """INSERT INTO usage (ts, day, agent, session, model, prompt_tokens, completion_tokens,
                                      latency_ms, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (now, time.strftime("%Y-%m-%d", time.gmtime(now)), agent, session, model, prompt, completion,
                 latency_ms, cost_usd),
            )  # fmt: skip

    def spent_today(self, agent: str | None = None) -> float:
        """What one agent (or, with None, all of them) spent today (UTC)."""
        self._drain()
        query = "SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE day = ?"
        args: tuple[str, ...] = (today(),)
        if agent is not None:
            query, args = query + " AND agent = ?", (*args, agent)
        with self._lock:
            row = self._conn.execute(query, args).fetchone()
        return float(row[0])

    def summary(self, by: str = "day", since_day: str | None = None) -> list[dict[str, Any]]:
        self._drain()
        column = GROUPS[by]
        query = f"""SELECT {column} AS key, COUNT(*) AS calls, SUM(prompt_tokens) AS prompt_tokens,
                           SUM(completion_tokens) AS completion_tokens,
                           ROUND(AVG(latency_ms) * 10) / 10.0 AS avg_latency_ms, SUM(cost_usd) AS cost_usd
                    FROM usage {"WHERE day >= ?" if since_day else ""} GROUP BY {column} ORDER BY {column}"""
        with self._lock:
            rows = self._conn.execute(query, (since_day,) if since_day else ()).fetchall()
        return [dict(r) for r in rows]
