"""The local driver: start a sandbox (bwrap + our supervisor), exec in it, destroy it.

A sandbox is long-lived. Creating one costs one bwrap start (through the launcher, which
puts it in the sandbox's cgroups); each exec after that is a round trip over a Unix
socket kept open to the supervisor inside, which spawns the command into a cgroup leaf of
its own. The sandbox
is tied to the thread that created it (bwrap --die-with-parent): create sandboxes from
the event loop's thread, never from a short-lived worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermitcrab.errors import SandboxError
from hermitcrab.sandbox.base import ExecResult, OutputChunk, SandboxSpec, check_name
from hermitcrab.sandbox.local import bwrap, cgroups, identity, launcher, quota, stage
from hermitcrab.sandbox.local.seccomp import filter_bpf

SUPERVISOR_SOURCE = Path(bwrap.sup.__file__)
LAUNCHER_SOURCE = Path(launcher.__file__)
MB = 1024 * 1024
log = logging.getLogger("hermitcrab.sandbox")
MAX_IDLE_CHANNELS = 8  # connections kept open per sandbox for the next commands
CREATE_TIMEOUT_S = 10.0
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes

OnOutput = Callable[[OutputChunk], None]


@dataclass
class LocalSandbox:
    spec: SandboxSpec
    proc: subprocess.Popen[bytes]
    state_dir: Path
    socket_path: Path
    host_pid: int  # the sandbox's init, as the host sees it
    status: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    groups: cgroups.SandboxGroups | None = None
    quota: quota.WorkspaceQuota | None = None
    idle: list[Channel] = field(default_factory=list)  # open exec connections, for the next one

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalDriver:
    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root
        self.images = state_root / ".workspace-images"  # capped workspaces' filesystems
        self._source: str | None = None
        self._launcher: str | None = None
        self._support: cgroups.Support | None = None

    def _supervisor_source(self) -> str:
        if self._source is None:
            self._source = SUPERVISOR_SOURCE.read_text()
        return self._source

    def _launcher_source(self) -> str:
        if self._launcher is None:
            self._launcher = LAUNCHER_SOURCE.read_text()
        return self._launcher

    def support(self) -> cgroups.Support:
        """What cgroups this machine gives us; the first call also clears trees left by a
        gateway that was killed before it could."""
        if self._support is None:
            self._support = cgroups.detect()
            cgroups.sweep_stale(self._support)
        return self._support

    def _groups(self, spec: SandboxSpec) -> cgroups.SandboxGroups | None:
        process = spec.policy.process
        support = self.support() if spec.layers.cgroups else cgroups.Support(None, None, ("switched off",))
        if process.memory == "required" and support.memory is None:
            raise SandboxError(
                f"sandbox '{spec.name}': the policy requires a memory cgroup (process.memory: required) "
                f"and this machine gives none ({'; '.join(support.why_not)}). fix: run the gateway "
                "as root or as a systemd user service with Delegate=yes, or set process.memory: "
                "best_effort in the policy"
            )
        if support.tracking is None and support.memory is None:
            return None
        groups = cgroups.SandboxGroups(support, spec.name, process.max_memory_mb * MB)
        try:
            groups.create()
        except OSError as exc:
            groups.destroy()
            raise SandboxError(f"sandbox '{spec.name}': cannot make its cgroups: {exc}") from None
        return groups

    @staticmethod
    def socket_path(state: Path, name: str) -> Path:
        """A socket's path in a sandbox's state folder, or, where that is too long for a
        Unix socket, in a private folder of ours under /tmp."""
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state / name
        if len(str(path)) <= MAX_SOCKET_PATH:
            return path
        folder = Path(f"/tmp/hermitcrab-{os.getuid()}")
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise SandboxError(f"{folder} is not a private folder of ours; refusing to put a socket there")
        return folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:20]}.sock"

    async def create(self, spec: SandboxSpec) -> LocalSandbox:
        check_name(spec.name)
        if shutil.which("bwrap") is None:
            raise SandboxError("bubblewrap (bwrap) is not installed. fix: apt-get install bubblewrap")
        if not spec.workspace.is_dir():
            raise SandboxError(f"workspace {spec.workspace} is not a folder. fix: create it first")

        if spec.layers.binds and not any(
            Path(bwrap.PYTHON).resolve().is_relative_to(p) for p in spec.policy.filesystem.read_only
        ):
            raise SandboxError(
                f"the policy's filesystem.read_only must include the folder of {bwrap.PYTHON} "
                "(usually /usr): the sandbox's supervisor runs on it"
            )
        uid = identity.host_uid(spec.policy)  # run_as_uid is who they are inside
        state = self.state_root / spec.name
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        bwrap.write_etc(state / "etc", spec.policy.process.run_as_uid)
        socket_path = self.socket_path(state, "ctl.sock")
        socket_path.unlink(missing_ok=True)
        as_root = os.geteuid() == 0
        problem = identity.warning(spec.policy) if as_root else None
        if problem:  # whoever has that uid could enter the sandbox: never start it
            raise SandboxError(f"sandbox '{spec.name}': {problem}")
        if not as_root and uid != os.getuid():
            raise SandboxError(
                f"sandbox '{spec.name}': process.host_uid {uid} needs a root gateway; a user's "
                "sandboxes run as that user on the host. fix: leave process.host_uid unset"
            )
        capped = spec.policy.filesystem.workspace_quota == "required"
        if capped:
            await self._cap_workspace(spec)
        if as_root:
            _chown_tree(spec.workspace, uid)  # the sandbox's uid owns its workspace

        staged: dict[str, str] = {}
        if as_root:
            staged = stage.stage_paths([host for _, host, _ in bwrap.binds(spec, state / "etc")])
        groups = self._groups(spec)
        group_fds = groups.supervisor_fds() if groups else {}

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        seccomp_r = info_r = info_w = status_r = status_w = -1
        plan: bwrap.Plan | None = None
        try:
            listener.bind(str(socket_path))
            listener.listen(64)
            info_r, info_w = os.pipe()
            status_r, status_w = os.pipe()
            seccomp_r = _memfd("seccomp", filter_bpf()) if spec.layers.seccomp else -1
            plan = bwrap.plan(spec, state / "etc", seccomp_r if seccomp_r >= 0 else None, info_w, staged)
            config = bwrap.supervisor_config(spec, plan.landlock_rules, listener.fileno(), status_w)
            config["cgroup"] = group_fds
            argv = [*plan.argv, bwrap.PYTHON, "-I", "-S", "-c", self._supervisor_source(), json.dumps(config)]
            if as_root or groups is not None:
                # Not a preexec_fn: this process has threads (see launcher.py).
                steps = {
                    "join": groups.join_files() if groups else [],
                    "stage": stage.stage_items(staged) if as_root else None,
                    "uid": uid if as_root else None,
                    "argv": argv,
                }
                argv = [bwrap.PYTHON, "-I", "-S", "-c", self._launcher_source(), json.dumps(steps)]
            for fd in group_fds.values():
                os.set_inheritable(fd, True)
            proc = subprocess.Popen(
                argv,
                pass_fds=[*plan.pass_fds, listener.fileno(), status_w, *group_fds.values()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except BaseException:
            if groups is not None:
                groups.destroy()
            raise
        finally:
            listener.close()  # the supervisor holds its own copy now
            for fd in {info_w, status_w, seccomp_r, *(plan.pass_fds if plan else []), *group_fds.values()}:
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        try:
            async with asyncio.timeout(CREATE_TIMEOUT_S):
                info, status = await asyncio.gather(
                    asyncio.to_thread(_read_json, info_r), asyncio.to_thread(_read_json, status_r)
                )
        except TimeoutError:
            proc.kill()
            if groups is not None:
                groups.destroy()
            raise SandboxError(f"sandbox '{spec.name}' did not start within {CREATE_TIMEOUT_S:g} s") from None
        if not status.get("ok") or "child-pid" not in info:
            proc.kill()
            stderr = (await asyncio.to_thread(proc.communicate))[1].decode(errors="replace").strip()
            if groups is not None:
                groups.destroy()
            reason = status.get("error") or stderr or "the supervisor exited without a word"
            raise SandboxError(f"sandbox '{spec.name}' failed to start: {reason}")
        support = groups.support if groups else cgroups.Support(None, None)
        status.update(
            support.describe(), host_uid=uid, workspace_quota="required" if capped else "best_effort"
        )
        box = LocalSandbox(spec, proc, state, socket_path, int(info["child-pid"]), status, groups=groups)
        if not capped:  # measured instead: see quota.py
            box.quota = quota.WorkspaceQuota(spec.workspace, spec.policy.filesystem.workspace_max_mb * MB)
            box.quota.after_command()  # its size now, in the background
        return box

    async def _cap_workspace(self, spec: SandboxSpec) -> None:
        why_not = quota.cap_unavailable()
        if why_not:
            raise SandboxError(
                f"sandbox '{spec.name}': filesystem.workspace_quota: required needs a size-capped "
                f"filesystem, and {why_not}. fix: set workspace_quota: best_effort (the size is then "
                "measured, and a command that grows it past the cap is killed)"
            )
        cap = spec.policy.filesystem.workspace_max_mb * MB
        try:
            await asyncio.to_thread(quota.mount_capped, self.images, spec.workspace, cap)
        except OSError as exc:
            raise SandboxError(f"sandbox '{spec.name}': cannot cap its workspace: {exc}") from None

    async def exec(
        self,
        box: LocalSandbox,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        max_output: int | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        if not argv:
            raise SandboxError("nothing to run: the command is empty")
        if not box.alive:
            raise SandboxError(f"sandbox '{box.name}' is not running. fix: recreate it")
        request: dict[str, Any] = {"argv": argv}
        if cwd:
            request["cwd"] = cwd
        if env is not None:
            base = bwrap.sandbox_env(box.spec)
            request["env"] = {**base, **env}
        policy_timeout = box.spec.policy.process.timeout_seconds
        request["timeout"] = min(timeout, policy_timeout) if timeout else policy_timeout
        if max_output is not None:
            request["max_output"] = max_output
        if stdin is not None:
            request["stdin"] = base64.b64encode(stdin).decode()
        groups = box.groups
        leaf = groups.lease() if groups is not None else None
        watcher = None
        if box.quota is not None:
            start = await box.quota.before_command()
            kill = (lambda: _kill_leaf(leaf)) if leaf is not None else (lambda: None)
            watcher = box.quota.watch(start, kill)
        try:
            channel = await _channel(box)
            socket.send_fds(channel.sock, [b"F"], [leaf.procs_fd, leaf.kill_fd] if leaf else [])
        except OSError as exc:
            if watcher is not None:
                watcher.cancel()
            if leaf is not None and groups is not None:
                groups.give_back(leaf)
            raise SandboxError(f"cannot reach sandbox '{box.name}': {exc.strerror}") from None
        out, err = bytearray(), bytearray()
        reader, writer = channel.reader, channel.writer
        done = False
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise SandboxError(f"sandbox '{box.name}' went away during the command")
                frame = json.loads(line)
                kind = frame["t"]
                if kind == "x":
                    done = True
                    break
                data = base64.b64decode(frame["d"])
                (out if kind == "o" else err).extend(data)
                if on_output is not None:
                    on_output(OutputChunk("stdout" if kind == "o" else "stderr", data))
        finally:
            if done and not frame.get("error") and len(box.idle) < MAX_IDLE_CHANNELS:
                box.idle.append(channel)  # whole and answered: good for the next command
            else:
                writer.close()
            over_quota = False
            if watcher is not None and box.quota is not None:
                watcher.cancel()
                over_quota = watcher.fired and leaf is not None
                box.quota.after_command()
            if leaf is not None and groups is not None:
                if done:
                    await _settle(groups, leaf, kill=not box.spec.policy.process.background_processes)
                else:
                    groups.retire(leaf)
        killed_by = frame.get("killed_by")
        if over_quota:
            killed_by = "workspace_max_mb"
        killed = frame.get("signal") == signal.SIGKILL and not killed_by
        if killed and groups is not None and groups.oom_kills() > 0:
            killed_by = "max_memory_mb"  # the memory cgroup's OOM killer ended it
        if frame.get("error") and frame.get("exit") in (None, 127):
            err.extend(frame["error"].encode() + b"\n")
        return ExecResult(
            exit_code=frame.get("exit"),
            signal=frame.get("signal"),
            killed_by=killed_by,
            stdout=bytes(out),
            stderr=bytes(err),
            bytes_out=frame.get("bytes_out", len(out) + len(err)),
            truncated=bool(frame.get("truncated")),
            output_file=frame.get("output_file"),
            duration_ms=frame.get("duration_ms", 0.0),
        )

    async def stream(
        self, box: LocalSandbox, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None
    ) -> LocalStream:
        """Start a long-lived command with stdin and stdout open both ways, on a connection
        of its own: no deadline (it lives until closed), its output uncapped, and killed
        with all it started when the connection closes (supervisor.py, "stream")."""
        if not argv:
            raise SandboxError("nothing to run: the command is empty")
        if not box.alive:
            raise SandboxError(f"sandbox '{box.name}' is not running. fix: recreate it")
        request: dict[str, Any] = {"argv": argv, "stream": True}
        if cwd:
            request["cwd"] = cwd
        if env is not None:
            request["env"] = {**bwrap.sandbox_env(box.spec), **env}
        groups = box.groups
        leaf = groups.lease() if groups is not None else None
        try:
            channel = await _channel(box)
            socket.send_fds(channel.sock, [b"F"], [leaf.procs_fd, leaf.kill_fd] if leaf else [])
            channel.writer.write(json.dumps(request).encode() + b"\n")
            await channel.writer.drain()
        except OSError as exc:
            if leaf is not None and groups is not None:
                groups.retire(leaf)
            raise SandboxError(f"cannot reach sandbox '{box.name}': {exc.strerror}") from None
        return LocalStream(box, channel, leaf)

    async def destroy(self, box: LocalSandbox, forget: bool = False) -> None:
        """Kill everything inside: the sandbox's init is its pid namespace's init, and when
        it dies the kernel kills every process left in the namespace. `forget`: it will not
        come back (a capped workspace's filesystem is let go; a stopped one stays mounted,
        so the gateway and a person see its files while it is down)."""
        for channel in box.idle:
            _drop(channel)
        box.idle.clear()
        if box.proc.poll() is None:  # else its pid may be someone else's by now
            with contextlib.suppress(ProcessLookupError):
                os.kill(box.host_pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.to_thread(box.proc.wait), 5)
        except TimeoutError:
            box.proc.kill()
            await asyncio.to_thread(box.proc.wait)
        if box.proc.stderr is not None:
            box.proc.stderr.close()
        box.socket_path.unlink(missing_ok=True)
        if box.quota is not None:
            box.quota.cancel()
        if box.groups is not None:
            await asyncio.to_thread(box.groups.destroy)
        if forget and box.status.get("workspace_quota") == "required":
            try:
                await asyncio.to_thread(quota.unmount, self.images, box.spec.workspace)
            except OSError as exc:
                log.warning("workspace not unmounted", extra={"sandbox": box.name, "error": str(exc)})

    def processes(self, box: LocalSandbox) -> list[int]:
        """Host pids of every live process inside the sandbox: its cgroup tree's, or where
        it has none, its pid namespace's (zombies, dead and waiting to be reaped, left out)."""
        if box.groups is not None and box.groups.track is not None:
            return [pid for pid in box.groups.pids() if pid != box.proc.pid]  # bwrap itself is outside
        try:
            ns = os.readlink(f"/proc/{box.host_pid}/ns/pid")
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == ns and not _zombie(entry):
                        found.append(int(entry))
        return found

    def freeze(self, box: LocalSandbox, frozen: bool) -> None:
        """Stop (or continue) every process inside: a crash-consistent moment for snapshots.
        The cgroup freezer stops them all; without one, SIGSTOP reaches what /proc shows."""
        if box.groups is not None and box.groups.freeze(frozen):
            return
        sig = signal.SIGSTOP if frozen else signal.SIGCONT
        for pid in self.processes(box):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


class LocalStream:
    """A streamed command's two ways (see LocalDriver.stream); its connection is its own
    and is never reused for another command."""

    def __init__(self, box: LocalSandbox, channel: Channel, leaf: cgroups.Leaf | None) -> None:
        self._box, self._channel, self._leaf = box, channel, leaf
        self._end: ExecResult | None = None
        self._closed = False

    async def write(self, data: bytes) -> None:
        frame = {"t": "i", "d": base64.b64encode(data).decode()}
        self._channel.writer.write(json.dumps(frame).encode() + b"\n")
        await self._channel.writer.drain()

    async def close_stdin(self) -> None:
        self._channel.writer.write(b'{"t":"c"}\n')
        await self._channel.writer.drain()

    async def read(self) -> OutputChunk | ExecResult:
        if self._end is not None:
            return self._end
        line = await self._channel.reader.readline()
        if not line:
            self._end = ExecResult(exit_code=None, killed_by="sandbox_gone")
            return self._end
        frame = json.loads(line)
        if frame["t"] == "x":
            self._end = ExecResult(
                exit_code=frame.get("exit"),
                signal=frame.get("signal"),
                killed_by=frame.get("killed_by"),
                stderr=(frame.get("error") or "").encode(),
                bytes_out=frame.get("bytes_out", 0),
                duration_ms=frame.get("duration_ms", 0.0),
            )
            return self._end
        return OutputChunk("stdout" if frame["t"] == "o" else "stderr", base64.b64decode(frame["d"]))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _drop(self._channel)  # the supervisor kills the command when its connection ends
        groups = self._box.groups
        if self._leaf is not None and groups is not None:
            await _settle(groups, self._leaf, kill=True)


@dataclass
class Channel:
    """An open connection to a sandbox's supervisor, for one command at a time. Each
    command's first byte carries its cgroup descriptors, sent on `sock` itself (the
    stream's buffer is empty between commands, so the order holds)."""

    loop: asyncio.AbstractEventLoop
    sock: socket.socket
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def _drop(channel: Channel) -> None:
    if channel.loop.is_closed():
        channel.sock.close()  # its transport went with its loop
    else:
        channel.writer.close()


async def _channel(box: LocalSandbox) -> Channel:
    """An idle channel of this event loop's, or a new one."""
    loop = asyncio.get_running_loop()
    while box.idle:
        channel = box.idle.pop()
        if channel.loop is loop and not channel.writer.is_closing() and not channel.reader.at_eof():
            return channel
        _drop(channel)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, str(box.socket_path))
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 22)
    except BaseException:
        sock.close()
        raise
    return Channel(loop, sock, reader, writer)


def _kill_leaf(leaf: cgroups.Leaf) -> None:
    with contextlib.suppress(OSError):
        os.write(leaf.kill_fd, b"1")


async def _settle(groups: cgroups.SandboxGroups, leaf: cgroups.Leaf, kill: bool) -> None:
    """Kill what the command left (the supervisor mostly has) and wait for its leaf to empty."""
    if not groups.give_back_now(leaf, kill):
        await asyncio.to_thread(groups.wait_empty, leaf)


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # not CLOEXEC: bwrap reads it
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_json(fd: int) -> dict[str, Any]:
    """Read one JSON object from a pipe. Not to EOF: other processes may hold the write end."""
    buffer = b""
    try:
        while chunk := os.read(fd, 65536):
            buffer += chunk
            try:
                return json.loads(buffer)
            except ValueError:
                continue
    finally:
        os.close(fd)
    return {}


def _chown_tree(root: Path, uid: int) -> None:
    if root.stat().st_uid == uid:
        return
    for folder, dirs, files in os.walk(root):
        os.chown(folder, uid, uid, follow_symlinks=False)
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, uid)
