"""A crash loop backs off, then stops and says why, instead of spinning all night.

Every run that ends without shutting down (killed, out of memory, an exception, a start
that failed) leaves an entry in a small ledger beside the pidfile. A start that finds
entries from the last ten minutes waits before it serves, longer for each; at the
fifth it does not start at all, and says so in the log and in `hermitcrab status`. A
person's `hermitcrab up` clears the ledger: someone is there to see what happens next.
The service manager's unit does not restart the exit code that means "stopped".
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermitcrab.errors import GatewayError

WINDOW_S = 600.0
LIMIT = 5  # unclean ends within WINDOW_S before the daemon stops starting on its own
MAX_BACKOFF_S = 60.0
STOPPED_EXIT = 78  # EX_CONFIG: the systemd unit's RestartPreventExitStatus
KEEP = 20  # entries kept for `status`, however old


class CrashLoop(GatewayError):
    """Too many unclean ends in a row: the daemon refuses to start until a person looks."""


def backoff_s(count: int) -> float:
    """The wait before serving after `count` recent unclean ends: none after one."""
    if count <= 1:
        return 0.0
    return min(MAX_BACKOFF_S, 2.0 ** (count - 1))


@dataclass(frozen=True)
class CrashLedger:
    path: Path

    def read(self) -> dict[str, Any]:
        """{"ends": [{"at", "why"}...], "stopped": {"at", "count", "why"} | None}; a
        damaged ledger reads as empty (it only ever delays or stops a start)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"ends": [], "stopped": None}
        ends = [
            e for e in data.get("ends", []) if isinstance(e, dict) and isinstance(e.get("at"), int | float)
        ]
        stopped = data.get("stopped") if isinstance(data.get("stopped"), dict) else None
        return {"ends": ends, "stopped": stopped}

    def recent(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        return [e for e in self.read()["ends"] if now - float(e["at"]) < WINDOW_S]

    def record(self, why: str, now: float | None = None) -> None:
        data = self.read()
        data["ends"] = [*data["ends"], {"at": time.time() if now is None else now, "why": why[:500]}][-KEEP:]
        self._write(data)

    def check(self, now: float | None = None) -> float:
        """Raise CrashLoop (and remember it) at LIMIT recent ends; else the wait to take first."""
        now = time.time() if now is None else now
        recent = self.recent(now)
        if len(recent) < LIMIT:
            return backoff_s(len(recent))
        last = recent[-1]["why"]
        data = self.read()
        data["stopped"] = {"at": now, "count": len(recent), "why": last}
        self._write(data)
        raise CrashLoop(
            f"the gateway ended without shutting down {len(recent)} times in the last "
            f"{WINDOW_S / 60:.0f} minutes (last: {last}); it does not start again on its own. "
            "fix: read `hermitcrab logs`, mend the cause, then `hermitcrab up`"
        )

    def summary(self, now: float | None = None) -> dict[str, Any] | None:
        """What `status` shows: recent unclean ends, the last one, and whether we stopped."""
        data = self.read()
        if not data["ends"] and not data["stopped"]:
            return None
        return {
            "recent": len(self.recent(now)),
            "last": data["ends"][-1] if data["ends"] else None,
            "stopped": data["stopped"],
        }

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _write(self, data: dict[str, Any]) -> None:
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(temp, self.path)
