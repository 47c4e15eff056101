"""Structured logs: one JSON object a line, with whatever context the caller attached."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from hermitcrab.agent.turns import TURN_AGENT
from hermitcrab.inference.queue import CALL_SESSION

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


# A path's query string may carry a token (a client's mistake; none is taken from it): no query is logged,
# whoever logs it (uvicorn logs each WebSocket path it accepts or refuses).
_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


def without_queries(text: str) -> str:
    return _QUERY.sub(r"\1?…", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": without_queries(record.getMessage()),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        # Inside a turn, every line names its session and agent, whoever logs it; inside
        # a sandbox's exec, the sandbox too.
        for key, var in (("session", CALL_SESSION), ("agent", TURN_AGENT)):
            value = var.get()
            if value is not None:
                entry.setdefault(key, value)
        # Not imported here: it loads the policy schema, which the gateway leaves until it
        # answers. Until something has loaded it, no exec can be running.
        sandboxes = sys.modules.get("hermitcrab.sandbox.base")
        if sandboxes is not None and (box := sandboxes.IN_SANDBOX.get()) is not None:
            entry.setdefault("sandbox", box)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


MAX_LOG_BYTES = 10 * 1024 * 1024  # then gateway.log becomes gateway.log.1, and so on
LOG_BACKUPS = 5


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates at MAX_LOG_BYTES, keeping LOG_BACKUPS old files; every file it opens is
    the owner's alone (0600), the fresh one after a rotation included."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")


class LastError(logging.Handler):
    """Keeps the last error logged, for `hermitcrab status` to show at a glance."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: dict[str, Any] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = {
            "at": record.created,
            "logger": record.name,
            "msg": without_queries(record.getMessage())[:500],
            "session": getattr(record, "session", None) or CALL_SESSION.get(),
        }


LAST_ERROR = LastError()


def setup_logging(log_file: Path, also_stderr: bool) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        PrivateRotatingFileHandler(
            log_file, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    ]
    if also_stderr:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [*handlers, LAST_ERROR]
    root.setLevel(logging.INFO)
    # httpx logs each request's whole URL at INFO: a Bot API's carries its token
    # (/bot<token>/getUpdates), so only its warnings come through.
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
