"""Which files are memory, and how a file becomes lines to index. The workspace is the
sandbox's to write: only plain files are read, never through a link, and only so much."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from hermitcrab.config.plain_files import read_plain as plain_bytes
from hermitcrab.store.memory_index import Chunk

MEMORY_FILE = "MEMORY.md"
NOTES_FOLDER = "memory"
MAX_FILE_BYTES = 1024 * 1024
MAX_FILES = 5000
MAX_LINE_CHARS = 1000
DAILY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.md$")
HEADING = re.compile(r"^#{1,6}\s+(.*)$")
# Template lines that say nothing ("(...)"), and bare list markers.
EMPTY = re.compile(r"^\s*(\(.*\)|[-*+]|\d+\.)?\s*$")


def memory_files(workspace: Path) -> dict[str, tuple[int, int]]:
    """Each memory file's workspace path and its stamp (mtime_ns, size)."""
    found: dict[str, tuple[int, int]] = {}
    stamp = _stamp(workspace / MEMORY_FILE)
    if stamp is not None:
        found[MEMORY_FILE] = stamp
    try:
        entries = sorted(os.scandir(workspace / NOTES_FOLDER), key=lambda e: e.name)[:MAX_FILES]
    except OSError:
        return found
    for entry in entries:
        if entry.name.endswith(".md") and entry.is_file(follow_symlinks=False):
            stamp = _stamp(Path(entry.path))
            if stamp is not None:
                found[f"{NOTES_FOLDER}/{entry.name}"] = stamp
    return found


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size) if stat.S_ISREG(info.st_mode) else None


def read_memory_file(workspace: Path, relative: str) -> str | None:
    """A memory file's text (at most MAX_FILE_BYTES), or None if it is not a plain file."""
    try:
        return plain_bytes(workspace, relative, MAX_FILE_BYTES)[:MAX_FILE_BYTES].decode(errors="replace")
    except OSError:
        return None


def chunks(text: str) -> list[Chunk]:
    """One chunk a line (a memory is usually a line, a list item), with its heading."""
    out = []
    heading = ""
    for number, line in enumerate(text.splitlines(), 1):
        if match := HEADING.match(line):
            heading = match.group(1).strip()[:200]
            continue
        if EMPTY.match(line) or line.lstrip().startswith("<!--"):
            continue
        out.append(Chunk(number, heading, line.strip()[:MAX_LINE_CHARS]))
    return out


def day_of(path: str) -> tuple[int, int, int] | None:
    """The date a daily note is for, from its name."""
    match = DAILY.match(path.rsplit("/", 1)[-1])
    return (int(match[1]), int(match[2]), int(match[3])) if match else None
