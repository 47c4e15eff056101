"""Which workspace content a turn may trust: a file the agent itself wrote in an untainted
turn, unchanged since (its modification time is what was recorded). Anything else there
(the owner's files, what a command or a tainted turn left, a link) is untrusted content,
and a turn that reads it, by a file tool, a listing or a command's output, is tainted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hermitcrab.agent.guard import PERSONA_FILES

if TYPE_CHECKING:
    from hermitcrab.store import Store
    from hermitcrab.store.agentstate import FileMark

# Past this many entries the workspace is not checked file by file: it is untrusted.
MAX_CHECKED_FILES = 5000


def stamp(workspace: Path, path: str) -> int:
    try:
        return os.lstat(workspace / path).st_mtime_ns
    except OSError:
        return -1


def file_taint(mark: FileMark | None, workspace: Path, path: str | None, shown: str) -> str | None:
    """Why reading this file taints the turn, or None when the agent may trust it."""
    if path is None:
        return f"file {shown} (outside the workspace)"
    if mark is None:
        return None if path in PERSONA_FILES else f"file {shown} (not written by the agent)"
    if mark.mtime_ns != stamp(workspace, path):
        return f"file {shown} (changed since the agent wrote it)"
    return f"file {shown} (written while reading {mark.source})" if mark.tainted else None


def record_write(
    store: Store, agent: str, workspace: Path, path: str, taint: str | None, session: str
) -> None:
    store.file_marks.mark(agent, path, taint is not None, taint, session, stamp(workspace, path))


def workspace_taint(store: Store, agent: str, workspace: Path) -> str | None:
    """Why a command's output (or a listing) in this workspace is untrusted, or None."""
    marks = store.file_marks.all(agent)
    folders = [""]  # a stack, not recursion: a tree a thousand folders deep is one a turn can make
    seen = 0
    while folders:
        folder = folders.pop()
        try:
            entries = sorted(os.scandir(workspace / folder), key=lambda e: e.name)
        except OSError as exc:
            return f"a workspace that could not be checked ({exc.strerror}: {folder or '.'})"
        for entry in entries:
            seen += 1
            if seen > MAX_CHECKED_FILES:
                return f"a workspace of more than {MAX_CHECKED_FILES} entries, not all checked"
            path = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_dir(follow_symlinks=False):
                folders.append(path)
                continue
            why = file_taint(marks.get(path), workspace, path, path)
            if why is not None:
                return f"the workspace holds {why.removeprefix('file ')}"
    return None
