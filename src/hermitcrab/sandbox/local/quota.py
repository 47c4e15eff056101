"""The workspace's size cap (filesystem.workspace_max_mb), held best effort.

No filesystem here caps the workspace, so its size is measured: in the background after
each command, every second while a command runs, and before a command starts when the
last measure found it over. A command that grows the workspace past the cap is killed
(`killed_by: workspace_max_mb`); one that shrinks it (a clean-up) is not. How far a writer
gets past the cap is bounded by what it writes in a second, and by max_file_size_mb per file.

The walk goes through directory descriptors and never follows a link: the sandbox owns
the tree, and a folder swapped for a link to / must not send the host walking its disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024
WATCH_EVERY_S = 1.0
FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def usage(root: Path, stop_after: int) -> int:
    """Bytes allocated under root (each inode once), counting stopped past `stop_after`."""
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        stack = [os.open(root, FLAGS)]
    except OSError:
        return 0
    try:
        while stack and total <= stop_after:
            folder = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        with contextlib.suppress(OSError):
                            info = entry.stat(follow_symlinks=False)
                            if (info.st_dev, info.st_ino) not in seen:
                                seen.add((info.st_dev, info.st_ino))
                                total += info.st_blocks * 512
                            if stat.S_ISDIR(info.st_mode):
                                stack.append(os.open(entry.name, FLAGS, dir_fd=folder))
            except OSError:
                pass
            finally:
                os.close(folder)
    finally:
        for fd in stack:
            os.close(fd)
    return total


@dataclass
class WorkspaceQuota:
    root: Path
    cap: int  # bytes
    last: int = 0
    over: bool = False
    _pending: asyncio.Task[int] | None = field(default=None, repr=False)

    async def measure(self) -> int:
        self.last = await asyncio.to_thread(usage, self.root, 4 * self.cap)
        self.over = self.last > self.cap
        return self.last

    async def before_command(self) -> int:
        """The size a command starts from; measured now only when the last measure was over."""
        if self.over:
            await self.measure()
        return self.last

    def after_command(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self.measure())

    async def watch(self, start: int, kill: Callable[[], None]) -> bool:
        """Runs beside a command until cancelled; True once it killed the command."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            used = await self.measure()
            if used > self.cap and used > start:
                kill()
                return True
