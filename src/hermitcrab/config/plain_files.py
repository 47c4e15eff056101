"""Reading a file that a sandbox may have written (the workspace, a skill's folder): only a
plain file, never through a symbolic link at any step of its path, and only so much of it.
A fifo or a device would hang or flood the gateway; a link may lead to any file of the host."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_plain(root: Path, relative: str, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of `root/relative` (one more than `limit` says "longer").
    Raises OSError, with a reason a person can read, for anything else."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise OSError(f"{relative!r} is not a path inside {root}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{relative}: not a plain file")
        return handle.read(limit + 1)
