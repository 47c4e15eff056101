"""The supervisor: our init inside every local sandbox.

It runs under the host's /usr/bin/python3 with `-I -S`, so it uses the standard library
only. bubblewrap has already built the namespaces and loaded the seccomp filter; the
supervisor then locks the filesystem down with Landlock, reports ready, and serves exec
requests on a listening Unix socket that it inherited as a file descriptor (the socket's
path exists only on the host, so nothing inside the sandbox can reach it).

Protocol, one connection per exec: the host sends one byte carrying, where the sandbox
has cgroups, two descriptors of the command's own cgroup (cgroup.procs, cgroup.kill),
then one JSON line
    {"argv": [...], "cwd": "...", "env": {...}, "timeout": s, "max_output": n, "stdin": "<b64>"}
and receives JSON lines: {"t": "o"|"e", "d": "<b64>"} for output as it is produced, then
one {"t": "x", "exit": ..., "signal": ..., "killed_by": ..., ...} at the end.

With "stream": true the command is a long-lived peer (an MCP server over stdio): after the
request the host sends {"t": "i", "d": "<b64>"} for its stdin and {"t": "c"} to close it;
there is no deadline and no output cap (the socket's backpressure bounds it), and when
the host closes the connection the command and everything it started are killed.

The host imports this module too, for `landlock_abi()`: one implementation of Landlock.
"""

from __future__ import annotations

import array
import base64
import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Any

# --- Landlock (uapi/linux/landlock.h); syscall numbers are the same on every architecture.
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

FS_V1 = (1 << 13) - 1
FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
READ_WRITE_DEV = FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR | FS_IOCTL_DEV

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed", ctypes.c_uint64), ("port", ctypes.c_uint64)]


RULE_NET_PORT = 2


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none or it is disabled."""
    return max(int(_libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)), 0)


def handled_fs(abi: int) -> int:
    rights = FS_V1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def _ruleset(abi: int, fs: int, net: int, scoped: int) -> int:
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    return _check(
        _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "landlock ruleset"
    )


def _restrict(ruleset_fd: int) -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.syscall(SYS_RESTRICT_SELF, ruleset_fd, 0), "landlock restrict_self")
    os.close(ruleset_fd)


def apply_landlock(abi: int, rules: list[tuple[str, int]], tcp_ports: tuple[int, ...] = ()) -> list[str]:
    """Allow only `rules` (path, rights) on the filesystem, no TCP but on `tcp_ports` (the
    door to the egress proxy), and scope abstract Unix sockets and signals to this domain.
    Returns the paths skipped as missing."""
    fs = handled_fs(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    ruleset = _ruleset(abi, fs, net, scoped)
    skipped = []
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            skipped.append(path)
            continue
        try:
            allowed = rights & fs
            if not os.path.isdir(path):
                allowed &= FILE_ONLY  # the kernel refuses directory rights on a file
            rule = _PathBeneath(allowed, fd)
            _check(
                _libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                f"landlock rule for {path}",
            )
        finally:
            os.close(fd)
    if net:
        for port in tcp_ports:
            rule = _NetPort(NET_BIND_TCP | NET_CONNECT_TCP, port)
            _check(_libc.syscall(SYS_ADD_RULE, ruleset, RULE_NET_PORT, ctypes.byref(rule), 0), f"port {port}")
    _restrict(ruleset)
    return skipped


# --- Exec

KILL_SIGNALS = {signal.SIGXCPU: "cpu_seconds", signal.SIGXFSZ: "max_file_size_mb"}
RLIMITS = {
    "max_processes": resource.RLIMIT_NPROC,
    "max_memory_mb": resource.RLIMIT_AS,
    "max_file_size_mb": resource.RLIMIT_FSIZE,
    "max_open_files": resource.RLIMIT_NOFILE,
    "cpu_seconds": resource.RLIMIT_CPU,
}
MB = 1024 * 1024
# Python ignores SIGPIPE and SIGXFSZ; a command must get the default back (SIGXFSZ is
# how max_file_size_mb stops a writer).
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGXCPU)


class Supervisor:
    """pid 1 of the sandbox (bwrap --as-pid-1): the kernel ignores SIGKILL sent to it from
    inside, and it reaps every orphan that ends up with it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.abi = 0
        self.listener = socket.socket(fileno=config["listen_fd"])
        self.counter = 0
        self.lock = threading.Lock()
        self.spawn_lock = threading.Lock()  # chdir + spawn must not interleave
        self.waiters: dict[int, int] = {}  # pid -> write end of that exec's wake-up pipe
        self.statuses: dict[int, int] = {}
        self.children = threading.Condition()
        self.active: set[int] = set()  # session ids of the commands running now
        # Descriptors of our cgroups, opened by the host: "home" (our own leaf), and on v1
        # "mem_work"/"mem_home" (the memory cgroup of commands, and ours).
        self.cgroup: dict[str, int] = config.get("cgroup") or {}

    def start(self) -> None:
        status: dict[str, Any] = {"ok": True, "pid": os.getpid()}
        try:
            # posix_spawn closes nothing: every fd of ours that a command must not hold is
            # close-on-exec. The listener came through bwrap, so it arrived inheritable.
            os.set_inheritable(self.listener.fileno(), False)
            for fd in self.cgroup.values():
                os.set_inheritable(fd, False)
            # Not dumpable: commands (same uid) cannot ptrace us, read /proc/1/mem, or take
            # our file descriptors with pidfd_getfd.
            _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
            # As pid 1 a default disposition makes a signal from inside a no-op; Python's own
            # SIGINT handler would instead raise KeyboardInterrupt and stop the sandbox.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            self._apply_rlimits()
            mode = self.config["landlock"]["mode"]
            self.abi = landlock_abi() if mode != "off" else 0
            status["landlock_abi"] = self.abi
            if mode == "off":
                status["landlock"] = "off"
            elif self.abi == 0:
                if mode == "required":
                    raise OSError(
                        "this kernel has no Landlock; the policy requires it "
                        "(set filesystem.landlock: best_effort to run without)"
                    )
                status["landlock"] = "unavailable"
            else:
                rules = [(p, r) for p, r in self.config["landlock"]["rules"]]
                door = self.config.get("egress")
                ports = (door["port"],) if door else ()
                status["landlock_skipped"] = apply_landlock(self.abi, rules, ports)
                status["landlock"] = "enforced"
            if self.config.get("egress"):
                open_door(self.config["egress"]["port"], self.config["egress"]["socket"])
        except OSError as exc:
            status = {"ok": False, "error": str(exc)}
        with os.fdopen(self.config["status_fd"], "w") as out:
            out.write(json.dumps(status))
        if not status["ok"]:
            sys.exit(1)

    def _apply_rlimits(self) -> None:
        """Limits set here are inherited by every command, with no window after spawn.
        CPU time is the exception (ours accumulates): it is set per command, in `run`."""
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # core dumps off, always
        for key, value in self.config.get("rlimits", {}).items():
            if key == "cpu_seconds":
                continue
            amount = value * MB if key in ("max_memory_mb", "max_file_size_mb") else value
            resource.setrlimit(RLIMITS[key], (amount, amount))

    def serve(self) -> None:
        threading.stack_size(512 * 1024)  # many threads fit under max_memory_mb
        threading.Thread(target=self.reap, daemon=True).start()
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # out of descriptors, for now (commands share our limits)
                time.sleep(0.05)
                continue
            try:
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to be had (a fork bomb took the processes)
                conn.close()

    def reap(self) -> None:
        """Collect every child and orphan; hand exit statuses to the exec that waits for them."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                with self.children:
                    self.children.wait(timeout=1.0)
                continue
            with self.lock:
                wake = self.waiters.pop(pid, None)
                if wake is not None:
                    self.statuses[pid] = status
            if wake is not None:
                os.write(wake, b"x")
                os.close(wake)

    def handle(self, conn: socket.socket) -> None:
        """One connection, many commands, one after another: the host keeps connections
        open for the next exec (a connect and a thread per command cost more than a spawn).
        Anything wrong with a request ends the connection: what follows it on the stream
        can no longer be told apart from the next request."""
        with conn:
            while True:
                fds: list[int] = []
                try:
                    data, fds = _recv_fds(conn)
                    if not data:
                        return  # the host closed it
                    leaf = (fds[0], fds[1]) if len(fds) == 2 else None
                    if leaf is None and "home" in self.cgroup:
                        raise OSError("the host sent no cgroup for this command")
                    request = json.loads(_read_line(conn))
                    self.run(conn, request, leaf)
                except (OSError, ValueError, KeyError) as exc:
                    with contextlib.suppress(OSError):
                        _send(conn, {"t": "x", "exit": None, "error": f"{type(exc).__name__}: {exc}"})
                    return
                finally:
                    for fd in fds:
                        os.close(fd)

    def _spawn(
        self,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        stdin_fd: int,
        out_w: int,
        err_w: int,
        leaf: tuple[int, int] | None,
    ) -> int:
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        groups = self.cgroup
        tid = str(threading.get_native_id()).encode()
        with self.spawn_lock:
            os.chdir(cwd)
            try:
                # A child is born in its parent's cgroup: we step into the command's own for
                # the spawn, so nothing it starts is ever outside it, even for an instant.
                if leaf is not None:
                    os.write(leaf[0], b"0")
                if "mem_work" in groups:
                    os.write(groups["mem_work"], tid)  # v1 memory: this thread only
                # posix_spawn, not fork: no copy of this process, a fraction of the cost.
                return os.posix_spawnp(
                    argv[0], argv, env, file_actions=actions, setsid=True, setsigdef=DEFAULT_SIGNALS
                )
            finally:
                os.chdir(self.config["cwd"])
                if "mem_home" in groups:
                    os.write(groups["mem_home"], tid)
                if leaf is not None:
                    os.write(groups["home"], b"0")

    def run(self, conn: socket.socket, request: dict[str, Any], leaf: tuple[int, int] | None = None) -> None:
        with self.lock:
            self.counter += 1
            exec_id = f"{self.counter}-{int(time.time() * 1000)}"
        stream = bool(request.get("stream"))
        max_output = sys.maxsize if stream else int(request.get("max_output", self.config["max_output"]))
        timeout = float(request.get("timeout") or self.config["timeout"])
        stdin_data = base64.b64decode(request["stdin"]) if request.get("stdin") else None
        started = time.monotonic()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        wake_r, wake_w = os.pipe()
        if stdin_data is not None or stream:
            stdin_fd, stdin_w = os.pipe()
        else:
            stdin_fd, stdin_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
        try:
            with self.lock:
                # Registered before the spawn returns, so that a quick exit cannot be missed.
                pid = self._spawn(
                    request["argv"],
                    request.get("cwd") or self.config["cwd"],
                    request.get("env") or self.config["env"],
                    stdin_fd,
                    out_w,
                    err_w,
                    leaf,
                )
                self.waiters[pid] = wake_w
                self.active.add(pid)  # its session id is its pid (setsid)
        except OSError as exc:
            for fd in (out_r, out_w, err_r, err_w, wake_r, wake_w, stdin_fd, stdin_w):
                if fd >= 0:
                    os.close(fd)
            _send(conn, {"t": "x", "exit": 127, "error": f"{request['argv'][0]}: {exc.strerror}"})
            return
        with self.children:
            self.children.notify()
        cpu = self.config.get("rlimits", {}).get("cpu_seconds")
        if cpu:
            try:
                # soft: SIGXCPU, reported as cpu_seconds; hard, a second later: SIGKILL.
                resource.prlimit(pid, resource.RLIMIT_CPU, (cpu, cpu + 1))
            except (ProcessLookupError, PermissionError):
                pass  # already gone
        for fd in (out_w, err_w, stdin_fd):
            os.close(fd)
        if stdin_w >= 0 and not stream:
            threading.Thread(target=_feed, args=(stdin_w, stdin_data), daemon=True).start()
        sent = total = 0
        spill = None
        spill_path = None
        killed_by = None
        status = None
        background = bool(self.config.get("background"))

        def kill() -> None:
            if leaf is not None:
                _kill_leaf(leaf[1])  # the command and everything it started, wherever it went
            _kill_group(pid)

        if stream:

            def stop_if_running() -> None:
                with self.lock:  # its pid is ours until run() lets it go: never kill a reused one
                    if pid in self.active:
                        kill()

            threading.Thread(target=_pump, args=(conn, stdin_w, stop_if_running), daemon=True).start()

        sel = selectors.DefaultSelector()
        try:
            sel.register(out_r, selectors.EVENT_READ, "o")
            sel.register(err_r, selectors.EVENT_READ, "e")
            sel.register(wake_r, selectors.EVENT_READ, "w")
            streams = 2
            deadline = float("inf") if stream else started + timeout
            drain_until = None
            while streams or status is None:
                now = time.monotonic()
                if status is None and now >= deadline and killed_by is None:
                    killed_by = "timeout_seconds"
                    kill()
                if drain_until is not None and now >= drain_until:
                    break  # something left the group and holds a pipe open: stop reading
                limit = deadline if status is None and killed_by is None else (drain_until or now + 1.0)
                wait = None if limit == float("inf") else max(limit - now, 0.0)
                for key, _ in sel.select(timeout=wait):
                    if key.data == "w":
                        sel.unregister(wake_r)
                        with self.lock:
                            status = self.statuses.pop(pid)
                        if not background:
                            kill()  # what the command left running dies with it
                        drain_until = time.monotonic() + 0.5
                        continue
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                        streams -= 1
                        continue
                    total += len(data)
                    room = max_output - sent
                    if room > 0:
                        piece = data[:room]
                        sent += len(piece)
                        _send(conn, {"t": key.data, "d": base64.b64encode(piece).decode()})
                        data = data[room:]
                    if data:
                        if spill is None:
                            spill_path, spill = self._spill_file(exec_id)
                        if spill is not None:
                            spill.write(data)
        finally:  # the host may be gone mid-command: nothing of this command stays behind
            sel.close()
            for fd in (out_r, err_r, wake_r):
                os.close(fd)
            if status is None:
                kill()
            with self.lock:  # no command starts while we sweep: it would look like a stray
                self.active.discard(pid)
                unclaimed = self.waiters.pop(pid, None)  # the reaper must not wake a reader gone
                if leaf is None and not background:
                    self.sweep(self.active)  # no cgroup: find strays by their session
            if unclaimed is not None:
                os.close(unclaimed)
            if spill is not None:
                spill.close()
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else None
        if killed_by is None and sig in KILL_SIGNALS:
            killed_by = KILL_SIGNALS[sig]
        _send(
            conn,
            {
                "t": "x",
                "exit": code if code >= 0 else 128 + (sig or 0),
                "signal": sig,
                "killed_by": killed_by,
                "bytes_out": total,
                "truncated": total > sent,
                "output_file": spill_path,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            },
        )

    def sweep(self, active: set[int]) -> None:
        """Kill every process that left its command's session (setsid) and so outlived it:
        nothing a command starts may stay behind to use up max_processes."""
        for _ in range(20):  # a process forking while we look is caught on the next pass
            strays = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or entry == "1":
                    continue
                try:
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        fields = stat.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] != b"Z" and int(fields[3]) not in active:  # fields[3]: session id
                    strays.append(int(entry))
            if not strays:
                return
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _spill_file(self, exec_id: str) -> tuple[str | None, Any]:
        folder = self.config["output_dir"]
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{exec_id}.log")
            return path, open(path, "wb")  # closed when the command ends
        except OSError:
            return None, None


def open_door(port: int, socket_path: str) -> None:
    """127.0.0.1:PORT inside the sandbox, its only way out (programs find it through
    HTTP(S)_PROXY). The listening socket itself goes to the egress proxy (SCM_RIGHTS over
    the proxy's Unix SEQPACKET socket), which accepts each connection and reads it
    directly: nothing in here relays or even sees a byte of it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as gate:
            gate.connect(socket_path)
            socket.send_fds(gate, [b"l"], [listener.fileno()])
    finally:
        listener.close()  # the proxy holds it now


def _pump(conn: socket.socket, fd: int, stop: Any) -> None:
    """A streamed command's stdin, from the host's frames. When the host goes (the
    connection ends, or sends what is not a frame), the command and all it started die."""
    reader = conn.makefile("rb")
    try:
        for line in reader:
            frame = json.loads(line)
            if frame.get("t") == "i" and fd >= 0:
                _write_all(fd, base64.b64decode(frame["d"]))
            elif frame.get("t") == "c" and fd >= 0:
                os.close(fd)
                fd = -1
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    finally:
        if fd >= 0:
            os.close(fd)
        stop()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        pass
    finally:
        os.close(fd)


def _kill_leaf(fd: int) -> None:
    try:
        os.write(fd, b"1")
    except OSError:
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _recv_fds(conn: socket.socket) -> tuple[bytes, list[int]]:
    """A request's first byte and the descriptors it carries, close-on-exec from the
    moment they arrive (socket.recv_fds makes them inheritable: a command spawned beside
    would get them)."""
    data, ancillary, flags, _ = conn.recvmsg(1, socket.CMSG_SPACE(2 * 4), socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", payload[: len(payload) - len(payload) % 4]).tolist()
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise OSError("the host's descriptors did not all arrive")
    return data, fds


def _read_line(conn: socket.socket) -> bytes:
    """One request line, read to its newline and not a byte further: what follows it on
    the connection is the next request, whose first byte carries descriptors."""
    chunks = []
    while True:
        data = conn.recv(1 << 16, socket.MSG_PEEK)
        if not data:
            raise OSError("the host closed the connection mid-request")
        end = data.find(b"\n")
        take = len(data) if end < 0 else end + 1
        chunks.append(conn.recv(take))
        if end >= 0:
            return b"".join(chunks)


def _send(conn: socket.socket, frame: dict[str, Any]) -> None:
    conn.sendall(json.dumps(frame, separators=(",", ":")).encode() + b"\n")


def main() -> None:
    supervisor = Supervisor(json.loads(sys.argv[1]))
    supervisor.start()
    supervisor.serve()


if __name__ == "__main__":
    main()
