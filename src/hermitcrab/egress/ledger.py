"""What the proxy counts and records: open connections per sandbox, and the audit log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hermitcrab.store import AuditEntry, AuditLog

Release = Callable[[], None]


class OpenCounts:
    """Open connections per sandbox, against network.max_connections: one sandbox cannot
    take every tunnel thread and descriptor the gateway has. Entered on the event loop,
    left from wherever a connection ends (tunnel threads too), hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._refused: dict[str, tuple[float, int]] = {}  # last audit time, refused since

    def enter(self, sandbox: str, limit: int) -> bool:
        with self._lock:
            count = self._open.get(sandbox, 0)
            if count >= limit:
                return False
            self._open[sandbox] = count + 1
            return True

    def releaser(self, sandbox: str) -> Release:
        done = threading.Event()

        def release() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                self._open[sandbox] -= 1

        return release

    def refused(self, sandbox: str) -> int:
        """Counts a refusal; returns how many to audit now (0: not yet, at most once a second)."""
        with self._lock:
            last, count = self._refused.get(sandbox, (0.0, 0))
            count += 1
            now = time.monotonic()
            if now - last < 1.0:
                self._refused[sandbox] = (last, count)
                return 0
            self._refused[sandbox] = (now, 0)
            return count

    def count(self, sandbox: str) -> int:
        with self._lock:
            return self._open.get(sandbox, 0)


class NetAudit:
    """One network decision, one audit entry (queued: the log's thread commits in batches)."""

    def __init__(self, audit: AuditLog | None) -> None:
        self.log = audit

    def __call__(self, sandbox: str, outcome: str, rule: str, what: str, detail: str) -> None:
        if self.log is not None:
            self.log.record_soon(
                AuditEntry(
                    actor=f"sandbox:{sandbox}",
                    action="network",
                    outcome=outcome,
                    sandbox=sandbox,
                    argv=[what],
                    rule=rule,
                    detail=detail,
                    ts=time.time(),
                )
            )
