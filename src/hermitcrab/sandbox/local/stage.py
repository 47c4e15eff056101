"""Starting a sandbox as root, without the sandbox being root on the host.

Processes of host uid 0 ignore RLIMIT_NPROC, and root owns most files that matter, so
the sandbox must run as an ordinary host uid (run_as_uid). bwrap, running as that uid,
must still reach the folders it binds, and those often live in root's private home
(0700). So the launcher, still root, makes itself a private mount namespace, re-mounts
each folder under a tmpfs at /run where any uid can reach it, then drops to run_as_uid
and execs bwrap. The host's own mounts are untouched.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

STAGE_ROOT = "/run"
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000


def stage_paths(sources: list[str]) -> dict[str, str]:
    """Where each host path will appear for bwrap."""
    return {src: f"{STAGE_ROOT}/hermitcrab-{i}" for i, src in enumerate(dict.fromkeys(sources))}


def launcher(staged: dict[str, str], uid: int) -> Callable[[], None]:
    """A preexec function for the bwrap child: stage the folders, then become `uid`."""
    libc = ctypes.CDLL(None, use_errno=True)  # resolved now: the child only calls
    items = [(src.encode(), dst.encode(), os.path.isdir(src)) for src, dst in staged.items()]
    tmpfs_options = b"mode=0755,size=64k"

    def check(result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"sandbox launcher: {what}: {os.strerror(err)}")

    def run() -> None:
        check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        check(
            libc.mount(b"tmpfs", STAGE_ROOT.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options), "tmpfs"
        )
        for src, dst, is_dir in items:
            if is_dir:
                os.mkdir(dst)
            else:
                os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
            check(libc.mount(src, dst, None, MS_BIND | MS_REC, None), f"bind {src.decode()}")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    return run
