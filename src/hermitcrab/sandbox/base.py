"""What every sandbox driver speaks: a spec to create from, output chunks, a result."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hermitcrab.errors import SandboxError
from hermitcrab.policy.schema import Policy

WORKSPACE_MOUNT = "/workspace"  # where the workspace appears inside every sandbox
EGRESS_PORT = 3128  # inside every sandbox, 127.0.0.1:EGRESS_PORT is the one door out
# The sandbox a piece of work is about: every log line written inside it names it.
IN_SANDBOX: ContextVar[str | None] = ContextVar("in_sandbox", default=None)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise SandboxError(
            f"invalid sandbox name {name!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Layers:
    """Which enforcement layers are on. All are on in production; tests switch single
    layers off to prove that each one holds on its own."""

    binds: bool = True  # only the policy's paths are mounted
    landlock: bool = True
    seccomp: bool = True
    rlimits: bool = True
    cgroups: bool = True  # each sandbox a cgroup tree, each command a leaf (where the machine allows)
    # Host folders bound read-write but deliberately left out of the Landlock rules
    # (tests only): a write there proves Landlock stops what a bind mistake lets through.
    unlisted_rw_binds: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxSpec:
    name: str
    policy: Policy
    workspace: Path
    layers: Layers = field(default_factory=Layers)
    # Host path of the egress proxy's Unix socket for this sandbox; None: no network at all.
    egress_socket: Path | None = None
    # The sandbox CA's certificate, and the system roots plus it, for terminated TLS.
    ca_cert: Path | None = None
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class OutputChunk:
    stream: str  # "stdout" | "stderr"
    data: bytes


@dataclass
class ExecResult:
    exit_code: int | None
    signal: int | None = None
    killed_by: str | None = None  # the policy limit that ended it: timeout_seconds, cpu_seconds...
    stdout: bytes = b""
    stderr: bytes = b""
    bytes_out: int = 0  # everything the command wrote, captured or not
    truncated: bool = False
    output_file: str | None = None  # where the output past the cap went (inside the sandbox)
    duration_ms: float = 0.0
    denied: str | None = None  # why the exec was refused before it ran

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "killed_by": self.killed_by,
            "stdout": self.stdout.decode(errors="replace"),
            "stderr": self.stderr.decode(errors="replace"),
            "bytes_out": self.bytes_out,
            "truncated": self.truncated,
            "output_file": self.output_file,
            "duration_ms": self.duration_ms,
            "denied": self.denied,
        }


class Sandbox(Protocol):
    """A running sandbox, as a driver hands it back."""

    spec: SandboxSpec
    host_pid: int  # its init, as the host sees it
    status: dict[str, Any]  # what the driver found at start: landlock, landlock_abi...
    created_at: float

    @property
    def name(self) -> str: ...

    @property
    def alive(self) -> bool: ...


class Stream(Protocol):
    """A long-lived command in a sandbox with its stdin and stdout open both ways (an MCP
    server over stdio). It lives until `close`, or until it exits."""

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def read(self) -> OutputChunk | ExecResult:
        """The next piece of output, or, once it has exited, how it ended (then again)."""
        ...

    async def close(self) -> None:
        """Kill it and everything it started, and let its resources go."""
        ...


class SandboxDriver(Protocol):
    """Makes sandboxes and runs commands in them. The runtime speaks only this."""

    state_root: Path  # one folder per sandbox below it, the driver's own

    def socket_path(self, state: Path, name: str) -> Path:
        """Where a Unix socket of this sandbox's lives on the host (the egress door)."""
        ...

    async def create(self, spec: SandboxSpec) -> Sandbox: ...

    async def exec(
        self,
        box: Any,
        argv: list[str],
        *,
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> ExecResult: ...

    async def stream(
        self, box: Any, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None
    ) -> Stream: ...

    async def destroy(self, box: Any, forget: bool = False) -> None:
        """Stop it; `forget`: for good (what it holds on the host may go too)."""
        ...

    def processes(self, box: Any) -> list[int]: ...

    def freeze(self, box: Any, frozen: bool) -> None:
        """Stop (or resume) everything inside, for a consistent snapshot."""
        ...
