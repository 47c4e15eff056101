"""Control groups for local sandboxes: each sandbox a tree, each command a leaf of it.

    <root>/hermitcrab/<sandbox>-<token>/supervisor    the supervisor: outside every limit
    <root>/hermitcrab/<sandbox>-<token>/work          the memory cap of all commands together
    <root>/hermitcrab/<sandbox>-<token>/work/<n>      one command and all it starts

Tracking (what runs, freeze, kill) lives on the cgroup v2 hierarchy, which has
`cgroup.kill` and `cgroup.freeze` with no controller enabled, so it works on a hybrid
machine whose controllers are all on v1. Memory uses v2's memory controller where v2 has
it, else the v1 memory hierarchy (the same tree, with `work` as the leaf of commands).

Nothing inside the sandbox can open a cgroup file: the supervisor gets descriptors the
host opened, and writes "0" (itself) into a command's leaf around each spawn, so that the
child is born in it (see supervisor.py); the kernel checks such a write against the
opener's credentials, not the writer's.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

MB = 1024 * 1024
TREE = "hermitcrab"
GATEWAY_LEAF = "hermitcrab-gateway"  # where the gateway steps if its own cgroup must hand controllers down
STALE_AFTER_S = 600


@dataclass(frozen=True)
class Support:
    """What this machine lets this process enforce with cgroups."""

    tracking: Path | None  # the v2 folder our trees go under; None: sessions and /proc only
    memory: tuple[str, Path] | None  # ("v2" | "v1", the folder our trees go under)
    why_not: tuple[str, ...] = ()  # what is missing, in words

    def describe(self) -> dict[str, str]:
        return {
            "process_tracking": "cgroup v2" if self.tracking else "best_effort",
            "memory_cap": f"cgroup {self.memory[0]}" if self.memory else "best_effort",
        }


def _mounts() -> tuple[Path | None, Path | None]:
    """Mount points of the cgroup v2 hierarchy and of v1's memory controller."""
    unified = memory_v1 = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, kind = left.split(), right.split()
            if len(fields) < 5 or len(kind) < 3:
                continue
            point = Path(fields[4].replace("\\040", " "))
            if kind[0] == "cgroup2" and unified is None:
                unified = point
            elif kind[0] == "cgroup" and "memory" in kind[2].split(","):
                memory_v1 = point
    return unified, memory_v1


def _own(controller: str) -> str:
    """This process's cgroup path on a hierarchy: "" for v2, the controller's name for v1."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path
    return "/"


def _try_tree(base: Path) -> Path | None:
    folder = base / TREE
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / f"probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return None
    return folder


def _enable(folder: Path, controller: str, make_room: bool = False) -> bool:
    """Hand `controller` down to folder's children (v2's subtree_control). With
    `make_room`, if the kernel refuses because a process lives in `folder` itself (v2
    lets a cgroup that hands a controller down hold none, except the root), and that
    process is only us, we step into a leaf of our own and ask again: that is how a
    daemon in a delegated cgroup (systemd's Delegate=yes) gets to cap its sandboxes."""
    try:
        if controller not in (folder / "cgroup.controllers").read_text().split():
            return False
        _write(folder / "cgroup.subtree_control", f"+{controller}")
        return True
    except OSError as exc:
        if exc.errno != errno.EBUSY or not make_room or not step_into_leaf(folder):
            return False
    return _enable(folder, controller)


def step_into_leaf(folder: Path) -> bool:
    """Move this process from `folder` into `folder`/GATEWAY_LEAF, if nothing but this
    process lives in `folder` (another's processes are not ours to move)."""
    try:
        living = (folder / "cgroup.procs").read_text().split()
        if living != [str(os.getpid())]:
            return False
        leaf = folder / GATEWAY_LEAF
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", "0")  # "0": the writer; v2 moves the whole process
    except OSError:
        return False
    return True


@cache
def detect() -> Support:
    unified, memory_v1 = _mounts()
    why: list[str] = []
    tracking = memory = None
    if unified is None:
        why.append("no cgroup v2 hierarchy is mounted")
    else:
        base = unified / _own("").lstrip("/")
        tracking = _try_tree(base)
        if tracking is None:
            why.append(f"{base} is not ours to write (no delegated cgroup)")
        elif not (tracking / "cgroup.kill").exists():
            tracking = None
            why.append("this kernel has no cgroup.kill (Linux >= 5.14)")
        elif _enable(base, "memory", make_room=True) and _enable(tracking, "memory"):
            memory = ("v2", tracking)
        elif "memory" in _controllers(base):
            why.append(
                f"{base} holds processes other than the gateway, so it cannot hand the memory "
                "controller down (run the gateway in a delegated cgroup of its own)"
            )
    if memory is None and memory_v1 is not None:
        folder = _try_tree(memory_v1 / _own("memory").lstrip("/"))
        if folder is not None:
            memory = ("v1", folder)
    if memory is None:
        why.append("no memory cgroup this process may create")
    return Support(tracking, memory, tuple(why))


def _controllers(folder: Path) -> list[str]:
    try:
        return (folder / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read_keys(path: Path) -> dict[str, str]:
    try:
        return dict(line.split(maxsplit=1) for line in path.read_text().splitlines() if " " in line)
    except OSError:
        return {}


def _rmtree(folder: Path) -> None:
    """Remove a cgroup folder and its children (cgroup folders hold no files of their own)."""
    if not folder.is_dir():
        return
    for child in [p for p in folder.iterdir() if p.is_dir()]:
        _rmtree(child)
    with contextlib.suppress(OSError):
        folder.rmdir()


@dataclass
class Leaf:
    """One command's cgroup, with descriptors the supervisor writes to."""

    folder: Path
    procs_fd: int
    kill_fd: int
    events_fd: int

    def populated(self) -> bool:
        try:
            return b"populated 1" in os.pread(self.events_fd, 4096, 0)
        except OSError:
            return True

    def close(self) -> None:
        for fd in (self.procs_fd, self.kill_fd, self.events_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class SandboxGroups:
    support: Support
    name: str
    memory_bytes: int
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    _free: list[Leaf] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=itertools.count)
    _oom_seen: int = 0

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.token}"

    @property
    def track(self) -> Path | None:
        return self.support.tracking / self.folder if self.support.tracking else None

    @property
    def mem(self) -> Path | None:
        return self.support.memory[1] / self.folder if self.support.memory else None

    @property
    def mem_v1(self) -> bool:
        return bool(self.support.memory and self.support.memory[0] == "v1")

    def create(self) -> None:
        if self.track:
            (self.track / "supervisor").mkdir(parents=True)
            (self.track / "work").mkdir()
        if self.mem and self.mem != self.track:
            (self.mem / "supervisor").mkdir(parents=True)
            (self.mem / "work").mkdir()
        if self.mem:
            if not self.mem_v1:
                _enable(self.mem, "memory")
            self._limit_memory()

    def _limit_memory(self) -> None:
        assert self.mem is not None
        work = self.mem / "work"
        if self.mem_v1:
            _write(work / "memory.limit_in_bytes", str(self.memory_bytes))
            if (work / "memory.memsw.limit_in_bytes").exists():  # swap counts too, where accounted
                _write(work / "memory.memsw.limit_in_bytes", str(self.memory_bytes))
        else:
            _write(work / "memory.max", str(self.memory_bytes))
            if (work / "memory.swap.max").exists():
                _write(work / "memory.swap.max", "0")

    def join_files(self) -> list[str]:
        """cgroup.procs files the launcher joins before it becomes bwrap: the supervisor's."""
        files = []
        for root in {self.track, self.mem} - {None}:
            assert root is not None
            files.append(str(root / "supervisor" / "cgroup.procs"))
        return files

    def supervisor_fds(self) -> dict[str, int]:
        """Descriptors the supervisor keeps: its own leaf to return to after a spawn, and,
        on v1, the memory leaf of commands (a thread joins it by tid around a spawn)."""
        fds: dict[str, int] = {}
        if self.track:
            fds["home"] = os.open(self.track / "supervisor" / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        if self.mem and self.mem_v1:
            fds["mem_work"] = os.open(self.mem / "work" / "tasks", os.O_WRONLY | os.O_CLOEXEC)
            fds["mem_home"] = os.open(self.mem / "supervisor" / "tasks", os.O_WRONLY | os.O_CLOEXEC)
        return fds

    def lease(self) -> Leaf | None:
        """A command's leaf: an emptied one again, or a new one."""
        if self.track is None:
            return None
        if self._free:
            return self._free.pop()
        folder = self.track / "work" / str(next(self._counter))
        folder.mkdir()
        return Leaf(
            folder,
            os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC),
            os.open(folder / "cgroup.kill", os.O_WRONLY | os.O_CLOEXEC),
            os.open(folder / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC),
        )

    def retire(self, leaf: Leaf) -> None:
        """A leaf whose command may not have ended (an exec cut off mid-way): killed, and
        never leased again (its command could still be spawning into it)."""
        with contextlib.suppress(OSError):
            os.write(leaf.kill_fd, b"1")
        leaf.close()

    def give_back_now(self, leaf: Leaf, kill: bool = True) -> bool:
        """give_back, if that needs no waiting: True when done."""
        if not kill:
            leaf.close()  # its processes may stay; the leaf dies with the sandbox
            return True
        if leaf.populated():  # the supervisor kills it when the command ends; this is the rest
            with contextlib.suppress(OSError):
                os.write(leaf.kill_fd, b"1")
            if leaf.populated():
                return False
        self._free.append(leaf)
        return True

    def give_back(self, leaf: Leaf, kill: bool = True) -> None:
        """After its command: kill what it left behind and keep the leaf for the next one.
        A leaf that does not empty (a process stuck in the kernel) is retired instead."""
        if not self.give_back_now(leaf, kill):
            self.wait_empty(leaf)

    def wait_empty(self, leaf: Leaf) -> None:
        """The rest of give_back, for a killed leaf not empty yet (blocking)."""
        deadline = time.monotonic() + 2.0
        while leaf.populated():
            if time.monotonic() > deadline:
                leaf.close()
                return
            time.sleep(0.005)
        self._free.append(leaf)

    def oom_kills(self) -> int:
        """How many processes the memory cap has killed since the last call."""
        if self.mem is None:
            return 0
        work = self.mem / "work"
        keys = _read_keys(work / ("memory.oom_control" if self.mem_v1 else "memory.events"))
        total = int(keys.get("oom_kill", "0") or 0)
        new, self._oom_seen = total - self._oom_seen, total
        return max(new, 0)

    def pids(self) -> list[int]:
        """Host pids of every process of the sandbox, the supervisor's included."""
        return _procs(self.track) if self.track is not None else []

    def freeze(self, frozen: bool) -> bool:
        """Freeze (or thaw) every process of the sandbox; False where there is no freezer."""
        if self.track is None:
            return False
        _write(self.track / "cgroup.freeze", "1" if frozen else "0")
        deadline = time.monotonic() + 5.0
        want = "1" if frozen else "0"
        while _read_keys(self.track / "cgroup.events").get("frozen") != want:
            if time.monotonic() > deadline:
                raise OSError(f"sandbox {self.name} did not {'freeze' if frozen else 'thaw'} within 5 s")
            time.sleep(0.002)
        return True

    def destroy(self) -> None:
        for leaf in self._free:
            leaf.close()
        self._free.clear()
        if self.track is not None and self.track.is_dir():
            with contextlib.suppress(OSError):
                _write(self.track / "cgroup.kill", "1")
            deadline = time.monotonic() + 5.0
            while _read_keys(self.track / "cgroup.events").get("populated") == "1":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            _rmtree(self.track)
        if self.mem is not None and self.mem != self.track and self.mem.is_dir():
            for pid in _procs(self.mem):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _rmtree(self.mem)


def _procs(folder: Path) -> list[int]:
    found: list[int] = []
    for sub, _, _ in os.walk(folder):
        with contextlib.suppress(OSError, ValueError):
            found += [int(p) for p in Path(sub, "cgroup.procs").read_text().split()]
    return found


def _parent(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def orphaned(procs: list[int]) -> bool:
    """A sandbox whose gateway is gone: nothing in its tree has a parent outside it but
    init (or the reaper that took the orphans). A live sandbox's bubblewrap is the child of
    the gateway that started it. (A gateway killed in the instant between starting
    bubblewrap and bubblewrap arming --die-with-parent leaves such a tree: the crash test
    found two in 400 kills.)"""
    inside = set(procs)
    for pid in procs:
        parent = _parent(pid)
        if parent is not None and parent not in inside and parent != 1 and not _is_reaper(parent):
            return False
    return bool(procs)


def _is_reaper(pid: int) -> bool:
    """Init of our pid namespace, or a subreaper: whoever orphans are given to."""
    try:
        return "\nPPid:\t0\n" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def sweep_stale(support: Support) -> None:
    """Remove trees of sandboxes no longer running (a gateway killed before it cleaned up),
    killing what an orphaned one still holds."""
    roots = [support.tracking] + ([support.memory[1]] if support.memory else [])
    for root in {r for r in roots if r is not None}:
        with contextlib.suppress(OSError):
            for child in root.iterdir():
                if not child.is_dir():
                    continue
                procs = _procs(child)
                if procs and orphaned(procs) and (child / "cgroup.kill").exists():
                    with contextlib.suppress(OSError):
                        _write(child / "cgroup.kill", "1")
                    deadline = time.monotonic() + 2.0
                    while _procs(child) and time.monotonic() < deadline:
                        time.sleep(0.01)
                    procs = _procs(child)
                young = time.time() - child.stat().st_mtime < STALE_AFTER_S  # another gateway's, starting
                if not young and not procs:
                    _rmtree(child)
