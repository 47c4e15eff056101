"""Know when a file changes without looking: inotify on its folder, read by the event loop.

An idle gateway must not wake: polling the policy file every 50 ms was most of its CPU at
rest. inotify wakes the loop only when a name in the folder is written, moved or removed
(an editor's save-by-rename included). Where inotify cannot be had, `watch` polls.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("hermitcrab.runtime")

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


async def watch(path: Path, on_change: Callable[[], object], poll_seconds: float) -> None:
    """Call `on_change` now, then each time `path` may have changed, until cancelled."""
    on_change()
    try:
        fd = _inotify(path.parent)
    except OSError as exc:
        log.warning("inotify is not available; polling", extra={"path": str(path), "error": str(exc)})
        await _poll(path, on_change, poll_seconds)
        return
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def ready() -> None:
        try:
            data = os.read(fd, 64 * 1024)
        except BlockingIOError:
            return
        if path.name.encode() in _names(data):
            changed.set()

    loop.add_reader(fd, ready)
    try:
        while True:
            await changed.wait()
            changed.clear()
            on_change()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _inotify(folder: Path) -> int:
    libc = _libc()
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    if libc.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
        errno = ctypes.get_errno()
        os.close(fd)
        raise OSError(errno, f"inotify_add_watch {folder} failed")
    return fd


def _names(data: bytes) -> set[bytes]:
    names, offset = set(), 0
    while offset + _HEADER.size <= len(data):
        _, _, _, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        names.add(data[offset : offset + length].rstrip(b"\0"))
        offset += length
    return names


async def _poll(path: Path, on_change: Callable[[], object], interval: float) -> None:
    stamp = _stamp(path)
    while True:
        await asyncio.sleep(interval)
        if (now := _stamp(path)) != stamp:
            stamp = now
            on_change()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)
