"""The workspace's size cap (filesystem.workspace_max_mb).

`workspace_quota: required`: the workspace is a filesystem of that size (below). Where
the machine cannot make one, `best_effort`: its size is measured: in the background after
each command, every second while a command runs, and before a command starts when the
last measure found it over. A command that grows the workspace past the cap is killed
(`killed_by: workspace_max_mb`); one that shrinks it (a clean-up) is not. How far a writer
gets past the cap is bounded by what it writes in a second, and by max_file_size_mb per file.

The walk goes through directory descriptors (os.fwalk) and never follows a link: the
sandbox owns the tree, and a folder swapped for a link to / must not send the host walking
its disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("hermitcrab.sandbox")
MB = 1024 * 1024
WATCH_EVERY_S = 1.0


def usage(root: Path, stop_after: int) -> int:
    """Bytes allocated under root (each inode once), counting stopped past `stop_after`.
    os.fwalk holds one descriptor per level of the folder it is in, not one per folder
    waiting; a folder it cannot read counts as over the cap (nothing hides from the count)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    unreadable: list[OSError] = []
    with contextlib.suppress(OSError):
        top = os.lstat(root)
        seen.add((top.st_dev, top.st_ino))
        total += top.st_blocks * 512
    for _, dirs, files, folder in os.fwalk(root, follow_symlinks=False, onerror=unreadable.append):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                info = os.stat(name, dir_fd=folder, follow_symlinks=False)
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
        if total > stop_after or unreadable:
            return max(total, stop_after + 1)
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


# --- The strong mechanism: the workspace is a filesystem of its own, workspace_max_mb big.
#
# An ext4 image in the driver's own folder (root's, 0700), loop-mounted over the workspace
# folder on the host, so the gateway, its tools and a person see the files the sandbox
# does. A write past the cap fails with ENOSPC inside; the host's disk never holds more
# than the image. What the folder held at the first mount moves into the new, empty
# filesystem. The mount stays while the sandbox is stopped (it goes when the sandbox is
# destroyed for good); after a reboot the next start mounts it again, and files put in the
# bare folder meanwhile are set aside beside it (NAME.outside-TIME), never merged as root.


def cap_unavailable() -> str | None:
    """Why this machine cannot give a workspace a size-capped filesystem, or None."""
    if os.geteuid() != 0:
        return "a loop-mounted filesystem needs a root gateway"
    if not os.path.exists("/dev/loop-control"):
        return "this machine has no loop devices (/dev/loop-control)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install e2fsprogs mount)"
    return None


def image_path(images: Path, workspace: Path) -> Path:
    """The workspace's image, in a folder of the driver's own (root's, 0700): never beside
    the workspace, where another sandbox's workspace could be the parent."""
    digest = hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:24]
    return images / f"{workspace.name[:40]}-{digest}.img"


def is_mounted(folder: Path) -> bool:
    target = str(folder.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if _unescape(line.split()[4]) == target:
                return True
    return False


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"{what}: {(done.stderr or done.stdout).strip() or f'exit {done.returncode}'}")


def mount_capped(images: Path, workspace: Path, cap: int) -> Path:
    """Make `workspace` a filesystem of `cap` bytes (once; later calls find it mounted).
    Returns the image. Blocking: run it on a worker thread."""
    image = image_path(images, workspace)
    if is_mounted(workspace):
        return image
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not image.exists():
        made = image.with_name(image.name + ".new")
        made.unlink(missing_ok=True)
        # O_EXCL | O_NOFOLLOW: a file of ours, made here, never one a link points at.
        fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, cap)  # sparse: the disk holds what is written, up to the cap
        finally:
            os.close(fd)
        try:
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(made)], "mkfs.ext4")
            if any(workspace.iterdir()):
                _move_in(workspace, made, cap)  # into a new, empty filesystem: nothing to follow
        except BaseException:
            made.unlink(missing_ok=True)
            raise
        made.rename(image)
    elif any(workspace.iterdir()):
        # Files put in the bare folder while the image was not mounted: set aside, not merged
        # (a merge as root into a tree the sandbox wrote would follow the links it planted).
        aside = workspace.with_name(f"{workspace.name}.outside-{int(time.time())}")
        aside.mkdir(mode=0o700)
        for entry in list(workspace.iterdir()):
            entry.rename(aside / entry.name)  # rename follows no link
        log.warning("files found in an unmounted workspace were set aside", extra={"folder": str(aside)})
    if not stat.S_ISREG(os.lstat(image).st_mode):
        raise OSError(f"{image} is not a regular file")
    _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(workspace)], f"mount {image}")
    with contextlib.suppress(OSError):
        (workspace / "lost+found").rmdir()  # e2fsck makes it again when it needs it
    return image  # owned by root until the driver hands the tree to the sandbox's uid


def unmount(images: Path, workspace: Path) -> None:
    """Let the workspace's filesystem go (the loop device with it). Blocking."""
    if is_mounted(workspace) and image_path(images, workspace).exists():
        _run(["umount", str(workspace)], f"umount {workspace}")


def _move_in(workspace: Path, image: Path, cap: int) -> None:
    """What the folder held, into the new filesystem (owners and links kept), then gone
    from the folder: one copy, in the image."""
    with tempfile.TemporaryDirectory(prefix="hc-ws-") as staging:
        _run(["mount", "-o", "loop,nosuid,nodev", str(image), staging], f"mount {image}")
        try:
            done = subprocess.run(["cp", "-a", f"{workspace}/.", staging], capture_output=True, text=True)
            if done.returncode != 0:
                held = usage(workspace, 1 << 62) // MB
                raise OSError(
                    f"the workspace holds {held} MB, more than its filesystem of {cap // MB} MB takes "
                    f"({done.stderr.strip()[:200]}). fix: raise filesystem.workspace_max_mb or make room"
                )
        finally:
            _run(["umount", staging], f"umount {staging}")
    for entry in list(workspace.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
