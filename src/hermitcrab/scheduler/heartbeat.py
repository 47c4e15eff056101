"""What a heartbeat reads: the agent's HEARTBEAT.md, and whether it asks for anything."""

from __future__ import annotations

import re

QUIET = "HEARTBEAT_OK"  # the agent's answer when nothing needs doing: no one is told
MAX_BYTES = 64 * 1024
_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)


def has_work(text: str) -> bool:
    """False for a file with nothing to act on: empty, or only comments, headings and blank
    lines (a template someone has not filled in). Such a heartbeat makes no model call."""
    for line in _COMMENTS.sub("", text).splitlines():
        bare = line.strip()
        if bare and not bare.startswith("#"):
            return True
    return False


def prompt(file: str, text: str) -> str:
    return (
        f"Heartbeat: this is your {file}. Do now what it asks that is due. If nothing needs doing, "
        f"reply with exactly {QUIET} and nothing else.\n\n{text}"
    )
