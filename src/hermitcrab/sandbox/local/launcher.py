"""The launcher: what runs between the gateway and bwrap, as its own small program.

The gateway is multi-threaded, so nothing may run in a child between fork and exec (a
`preexec_fn` can deadlock on a lock another thread held). This program is started with
`python3 -I -S` and the standard library only; it

1. joins the sandbox's cgroups (the supervisor's leaf), so that bwrap and everything it
   starts is counted, frozen and killed through them from its first instruction;
2. as root, makes itself a private mount namespace and re-mounts each folder bwrap must
   bind under a tmpfs at /run, where any uid can reach it (a folder in root's private
   home would be out of reach once it is not root); the host's own mounts are untouched;
3. as root, drops to the sandbox's uid (processes of host uid 0 ignore RLIMIT_NPROC, and
   root owns most files that matter);
4. execs bwrap, which keeps this process's pid: bwrap's --die-with-parent still sees the
   gateway as its parent.

Argument: one JSON object {"join": [...], "stage": [[src, dst, is_dir], ...], "uid": n|null,
"argv": [...]}.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

STAGE_ROOT = "/run"
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000


def fail(what: str, err: int) -> None:
    sys.stderr.write(f"sandbox launcher: {what}: {os.strerror(err)}\n")
    sys.exit(126)


def join(files: list[str]) -> None:
    for path in files:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as exc:
            fail(f"join cgroup {path}", exc.errno or 1)


def stage(items: list[list]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            fail(what, ctypes.get_errno())

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    options = b"mode=0755,size=64k"
    check(libc.mount(b"tmpfs", STAGE_ROOT.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), "tmpfs")
    for src, dst, is_dir in items:
        if is_dir:
            os.mkdir(dst)
        else:
            os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
        check(libc.mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None), f"bind {src}")


def main() -> None:
    plan = json.loads(sys.argv[1])
    join(plan.get("join") or [])
    if plan.get("stage") is not None:
        stage(plan["stage"])
    uid = plan.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    argv = plan["argv"]
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        fail(f"exec {argv[0]}", exc.errno or 1)


if __name__ == "__main__":
    main()
