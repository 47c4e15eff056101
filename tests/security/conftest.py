"""The escape battery's fixtures: real sandboxes, bait on the host, and the verdict protocol.

Every attack runs inside a real local sandbox (bubblewrap namespaces, the seccomp filter,
Landlock, rlimits; nothing mocked). A probe is Python run by the sandbox's own python3,
and it ends by printing one verdict line:

    BLOCKED <ERRNO or WORD> <what>   the attack failed, and how the kernel said no
    ESCAPED <what>                   the attack worked: a hole

A probe that dies without a verdict proves nothing, so `assert_blocked` fails on that too.

The bait on the host is world-readable, and the host folders bound read-write in the
layer tests are world-writable: file permissions alone would let the sandbox's uid
(identity.HOST_UID) through, so whatever stops an attack is a sandbox layer, not DAC.

Sandboxes die with the thread that created them (bwrap --die-with-parent), so every
sandbox is created, used and destroyed through one event loop run from the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent
from typing import Any, TypeVar

import pytest

from hermitcrab.errors import SandboxError
from hermitcrab.policy.schema import DEFAULT_READ_ONLY, Policy
from hermitcrab.sandbox.base import ExecResult, Layers, SandboxSpec
from hermitcrab.sandbox.local import identity, supervisor
from hermitcrab.sandbox.local.driver import LocalDriver, LocalSandbox

T = TypeVar("T")

# Small limits keep every attack on resources fast.
SMALL_PROCESS = {
    "max_processes": 32,
    "max_memory_mb": 256,
    "max_file_size_mb": 8,
    "cpu_seconds": 2,
    "timeout_seconds": 5,
}
SANDBOX_UID = identity.HOST_UID  # who a root gateway's sandboxes are on the host
HOST_SECRET_ENV = "HERMITCRAB_ESCAPE_TEST_SECRET"
# A ceiling on how long the host waits for one exec: a hung sandbox fails its test instead
# of hanging the battery. Not a timing assertion: no attack needs anywhere near this.
HOST_WAIT_S = 60.0
MB = 1024 * 1024


def small_policy(process: dict[str, Any] | None = None, filesystem: dict[str, Any] | None = None) -> Policy:
    return Policy(
        version=1,
        process={**SMALL_PROCESS, **(process or {})},
        filesystem=filesystem or {},
    )


# --- The probe side: Python source that runs inside the sandbox.

PRELUDE = '''\
import ctypes, errno, json, os, signal, socket, struct, subprocess, sys, time
ARGS = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def blocked(why=""):
    print("BLOCKED", why, flush=True)
    os._exit(0)


def escaped(why=""):
    print("ESCAPED", why, flush=True)
    os._exit(0)


def ename(number):
    return errno.errorcode.get(number, str(number))


def syscall(nr, *args):
    """A raw system call; raises OSError the way libc's wrappers report errors."""
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *cargs)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def attempt(what, fn):
    """Run one attack: an OSError is the block, anything returned is the escape."""
    try:
        got = fn()
    except OSError as exc:
        blocked(f"{ename(exc.errno)} {what}")
    escaped(f"{what} -> {got!r}"[:300])


def read(path, size=4096):
    with open(path, "rb") as f:
        return f.read(size)


def write(path, data=b"pwned", mode="wb"):
    with open(path, mode) as f:
        return f.write(data)


def symlink(target, path):
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def sibling():
    """A victim of our own inside the sandbox: same uid, dumpable, in our Landlock domain,
    and forked from us, so every address of ours is mapped in it too."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    return pid

'''


@dataclass(frozen=True)
class Attack:
    """One attack: Python run in the sandbox, the layer that must stop it, and (where that
    layer has a recognisable answer) the errnos it may answer with."""

    name: str
    layer: str
    code: str
    errnos: tuple[str, ...] = ()
    marks: tuple[pytest.MarkDecorator, ...] = ()  # a known hole: xfail(strict=True, raises=Escaped)

    @property
    def id(self) -> str:
        return f"{self.layer}:{self.name}"


def cases(*attacks: Attack) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("attack", [pytest.param(a, id=a.id, marks=a.marks) for a in attacks])


class Escaped(AssertionError):
    """The probe said ESCAPED: the attack worked. Distinct from the other failures (no
    verdict, the wrong errno), so that a known hole's xfail expects exactly this."""


def verdict(result: ExecResult) -> str | None:
    """The probe's last verdict line, or None when it reached none."""
    lines = [
        line
        for line in result.stdout.decode(errors="replace").splitlines()
        if line.startswith(("BLOCKED", "ESCAPED"))
    ]
    return lines[-1] if lines else None


def describe(result: ExecResult) -> str:
    return (
        f"exit={result.exit_code} signal={result.signal} killed_by={result.killed_by} "
        f"stdout={result.stdout.decode(errors='replace')[-600:]!r} "
        f"stderr={result.stderr.decode(errors='replace')[-600:]!r}"
    )


def assert_blocked(result: ExecResult, layer: str, errnos: tuple[str, ...] = ()) -> str:
    """The attack must have failed, and the probe must have said so."""
    line = verdict(result)
    assert line is not None, (
        f"the probe reached no verdict, so nothing shows that the {layer} layer stopped the attack: "
        f"{describe(result)}"
    )
    if line.startswith("ESCAPED"):
        raise Escaped(
            f"ESCAPE: the {layer} layer should have stopped this attack, but it succeeded: {describe(result)}"
        )
    if errnos:
        answer = line.split()[1] if len(line.split()) > 1 else ""
        assert answer in errnos, (
            f"the attack failed, but not the way the {layer} layer fails it "
            f"(expected one of {errnos}): {line}; {describe(result)}"
        )
    return line


def assert_escaped(result: ExecResult, what: str) -> str:
    """For controls: with the layer under test switched off, the same attack works, which
    shows that the layer (and not something else) is what stops it."""
    line = verdict(result)
    assert line is not None and line.startswith("ESCAPED"), (
        f"control failed: {what} should work with the layer switched off, so the test proves "
        f"nothing about that layer: {describe(result)}"
    )
    return line


def wait_until(predicate: Callable[[], T], what: str, limit_s: float = 15.0) -> T:
    """Poll for a state the kernel reaches asynchronously (a killed process disappearing).
    The limit is a liveness ceiling, not a speed requirement."""
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"never happened: {what}"
            return value
        time.sleep(0.02)


# --- The host side.


@dataclass
class Bait:
    """Things on the host the sandbox must never reach."""

    root: Path  # /var/tmp/hcbait...: outside /tmp, so a private /tmp does not hide it by accident
    secret: str
    ssh_key: Path
    home: Path  # a HERMITCRAB_HOME outside the sandbox's workspace
    token: Path
    state_db: Path
    workspace: Path  # home/workspace: where the agent's workspace lives in production
    host_accounts: list[str] = field(default_factory=list)

    def args(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "ssh_key": str(self.ssh_key),
            "home": str(self.home),
            "token": str(self.token),
            "state_db": str(self.state_db),
            "host_accounts": self.host_accounts,
            "host_pid": os.getpid(),
            "env_name": HOST_SECRET_ENV,
        }


def _host_only_accounts() -> list[str]:
    ours = {"root", "sandbox", "nobody"}
    names = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/passwd").read_text().splitlines():
            name = line.split(":", 1)[0]
            if name and name not in ours:
                names.append(name)
    return names


@pytest.fixture(scope="session")
def bait() -> Iterator[Bait]:
    root = Path(tempfile.mkdtemp(prefix="hcbait", dir="/var/tmp"))
    root.chmod(0o755)
    secret = "hc-secret-" + os.urandom(12).hex()
    ssh = root / "dot-ssh"
    ssh.mkdir(mode=0o755)
    key = ssh / "id_rsa"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n")
    home = root / "hermitcrab-home"
    home.mkdir(mode=0o755)
    token = home / "gateway.token"
    token.write_text(secret + "\n")
    state_db = home / "state.db"
    with contextlib.closing(sqlite3.connect(state_db)) as db:
        db.execute("create table secrets (value text)")
        db.execute("insert into secrets values (?)", (secret,))
        db.commit()
    workspace = home / "workspace"
    workspace.mkdir()
    for path in (key, token, state_db):
        path.chmod(0o644)  # readable to any uid: only the sandbox stands in the way
    previous = os.environ.get(HOST_SECRET_ENV)
    os.environ[HOST_SECRET_ENV] = secret  # the host's environment must never reach a command
    try:
        yield Bait(root, secret, key, home, token, state_db, workspace, _host_only_accounts())
    finally:
        if previous is None:
            os.environ.pop(HOST_SECRET_ENV, None)
        else:
            os.environ[HOST_SECRET_ENV] = previous
        shutil.rmtree(root, ignore_errors=True)


class Lab:
    """Creates, drives and destroys sandboxes through one event loop on the main thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, root: Path, bait: Bait) -> None:
        self.loop = loop
        self.root = root
        self.bait = bait
        self.driver = LocalDriver(root / "s")
        self.live: list[LocalSandbox] = []
        self._names = itertools.count()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def create(
        self,
        policy: Policy | None = None,
        layers: Layers | None = None,
        workspace: Path | None = None,
        name: str = "box",
    ) -> LocalSandbox:
        name = f"{name}-{next(self._names)}"
        if workspace is None:
            workspace = self.root / "ws" / name
            workspace.mkdir(parents=True)
        spec = SandboxSpec(name, policy or small_policy(), workspace, layers or Layers())
        box = self.run(self.driver.create(spec))
        self.live.append(box)
        return box

    def exec(
        self,
        box: LocalSandbox,
        argv: list[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        host_wait: float = HOST_WAIT_S,
    ) -> ExecResult:
        return self.run(
            asyncio.wait_for(self.driver.exec(box, argv, timeout=timeout, stdin=stdin), host_wait)
        )

    def sh(self, box: LocalSandbox, script: str, **kw: Any) -> ExecResult:
        return self.exec(box, ["sh", "-c", script], **kw)

    def py(self, box: LocalSandbox, code: str, args: dict[str, Any] | None = None, **kw: Any) -> ExecResult:
        payload = json.dumps({**self.bait.args(), **(args or {})})
        return self.exec(box, ["python3", "-c", PRELUDE + dedent(code), payload], **kw)

    def attack(self, box: LocalSandbox, attack: Attack, **kw: Any) -> str:
        return assert_blocked(self.py(box, attack.code, **kw), attack.layer, attack.errnos)

    def destroy(self, box: LocalSandbox) -> None:
        if box in self.live:
            self.live.remove(box)
        self.run(self.driver.destroy(box))

    def works(self, box: LocalSandbox, layer: str) -> None:
        """The sandbox still serves commands after an attack on it."""
        assert box.alive, f"the sandbox died; the {layer} layer should have kept it running"
        try:
            result = self.exec(box, ["echo", "still-here"], host_wait=20)
        except (SandboxError, TimeoutError) as exc:
            raise AssertionError(
                f"the sandbox no longer answers ({exc!r}); the {layer} layer should have kept it working"
            ) from None
        assert result.exit_code == 0 and result.stdout == b"still-here\n", (
            f"the sandbox no longer runs commands; the {layer} layer should have kept it working: "
            f"{describe(result)}"
        )


def _prerequisites() -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed"
    if os.geteuid() != 0:
        return "the escape battery runs as root (the sandbox then runs as a reserved host uid)"
    if supervisor.landlock_abi() < 1:
        return "this kernel has no Landlock"
    if not Path("/usr/bin/python3").exists():
        return "/usr/bin/python3 (the supervisor's interpreter) is missing"
    return None


@pytest.fixture(scope="session")
def battery_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for the whole battery, run from the main thread (see the module docstring)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def lab(battery_loop: asyncio.AbstractEventLoop, bait: Bait) -> Iterator[Lab]:
    missing = _prerequisites()
    if missing:
        pytest.skip(missing)
    root = Path(tempfile.mkdtemp(prefix="hc"))  # short: the control socket lives under it
    lab = Lab(battery_loop, root, bait)
    yield lab
    for box in list(lab.live):
        with contextlib.suppress(Exception):
            lab.destroy(box)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def box(lab: Lab, bait: Bait) -> LocalSandbox:
    """The shared default sandbox for probes that leave it as it was. Its workspace is
    HERMITCRAB_HOME/workspace, as in production: the token and state.db sit next door."""
    return lab.create(workspace=bait.workspace, name="main")


@pytest.fixture
def fresh(lab: Lab) -> Iterator[Callable[..., LocalSandbox]]:
    """Sandboxes for destructive attacks, destroyed when the test ends."""
    made: list[LocalSandbox] = []

    def make(**kw: Any) -> LocalSandbox:
        box = lab.create(**kw)
        made.append(box)
        return box

    yield make
    for box in made:
        if box in lab.live:
            lab.destroy(box)


class Listener:
    """A host server that records every connection it accepts."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[tuple[Listener, int]]:
    """A real TCP server on the host's 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = Listener(sock)
    yield server, sock.getsockname()[1]
    server.close()


@pytest.fixture(scope="session")
def abstract_server() -> Iterator[tuple[Listener, str]]:
    """A Unix socket in the host's abstract namespace (no file to bind: only the network
    namespace keeps it apart)."""
    name = "hc-escape-" + os.urandom(6).hex()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(16)
    server = Listener(sock)
    yield server, name
    server.close()


@pytest.fixture
def host_victim() -> Iterator[subprocess.Popen[bytes]]:
    """A host process of the sandbox's own uid: only the pid namespace keeps the sandbox
    from signalling it (same uid, so permissions would allow it)."""
    proc = subprocess.Popen(["sleep", "1000"], user=SANDBOX_UID, group=SANDBOX_UID, extra_groups=[])
    yield proc
    proc.kill()
    proc.wait()


def default_read_only_plus(*paths: str) -> dict[str, Any]:
    return {"read_only": [*DEFAULT_READ_ONLY, *paths]}


# A fork bomb that stops at four times the limit; run with args={'max_processes': N}.
FORK_BOMB = """
children = []
try:
    while len(children) < 4 * ARGS['max_processes']:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    blocked(f'{ename(exc.errno)} after {len(children)} processes')
escaped(f'{len(children)} processes, max_processes is {ARGS["max_processes"]}')
"""
