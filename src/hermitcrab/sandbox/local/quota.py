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
import time
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
    measured_at: float = 0.0
    _pending: asyncio.Future[int] | asyncio.TimerHandle | None = field(default=None, repr=False)

    async def measure(self) -> int:
        self.last = await asyncio.to_thread(usage, self.root, 4 * self.cap)
        self.over = self.last > self.cap
        self.measured_at = time.monotonic()
        return self.last

    async def before_command(self) -> int:
        """The size a command starts from; measured now only when the last measure was over."""
        if self.over:
            await self.measure()
        return self.last

    def after_command(self) -> None:
        """Measure soon, in the background: at once, or where the last measure is under a
        second old, when it is a second old (commands in quick succession share one)."""
        pending = self._pending
        if pending is not None and not (isinstance(pending, asyncio.Future) and pending.done()):
            return  # one is in flight or due
        wait = self.measured_at + WATCH_EVERY_S - time.monotonic()
        loop = asyncio.get_running_loop()
        if wait <= 0:
            self._pending = asyncio.ensure_future(self.measure())
        else:
            self._pending = loop.call_later(wait, self._due)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()

    def _due(self) -> None:
        self._pending = asyncio.ensure_future(self.measure())

    def watch(self, start: int, kill: Callable[[], None]) -> Watch:
        """A check every second beside a running command; cancel it when the command ends."""
        return Watch(self, start, kill)


class Watch:
    def __init__(self, quota: WorkspaceQuota, start: int, kill: Callable[[], None]) -> None:
        self.quota, self.start, self.kill = quota, start, kill
        self.fired = False
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_EVERY_S, self._tick)

    def _tick(self) -> None:
        self._task = asyncio.ensure_future(self._check())

    async def _check(self) -> None:
        used = await self.quota.measure()
        if used > self.quota.cap and used > self.start:
            self.fired = True
            self.kill()
            return
        self._timer = asyncio.get_running_loop().call_later(WATCH_EVERY_S, self._tick)

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
