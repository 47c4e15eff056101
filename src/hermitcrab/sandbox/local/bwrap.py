"""Policy -> bubblewrap arguments, one promise a line.

This module is the audit point of the local sandbox: every policy field that the
namespaces and mounts enforce is mapped here, and nothing else adds a mount or a
namespace. Landlock and rlimits are handed to the supervisor in `supervisor_config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermitcrab.policy.network import credential_env, credential_placeholder
from hermitcrab.sandbox.base import EGRESS_PORT, WORKSPACE_MOUNT, SandboxSpec
from hermitcrab.sandbox.local import supervisor as sup

PYTHON = "/usr/bin/python3"  # the supervisor's interpreter, inside the sandbox
HOSTNAME = "hermitcrab"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf")
ALL_FS = sup.handled_fs(7)


@dataclass
class Plan:
    argv: list[str]
    pass_fds: list[int] = field(default_factory=list)  # inherited by bwrap, closed after spawn
    landlock_rules: list[tuple[str, int]] = field(default_factory=list)


EGRESS_SOCKET = "/run/hermitcrab/egress.sock"  # inside the sandbox
CA_CERT = "/run/hermitcrab/ca.pem"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def sandbox_env(spec: SandboxSpec) -> dict[str, str]:
    """The whole environment a command sees: nothing of the host's passes in."""
    proxy = {}
    if spec.egress_socket is not None:
        # Credentials bound by the policy appear as placeholders only.
        for rule in spec.policy.network.rules:
            if rule.credentials:
                proxy[credential_env(rule.credentials)] = credential_placeholder(rule.credentials)
        url = f"http://127.0.0.1:{EGRESS_PORT}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            proxy[name] = proxy[name.lower()] = url
        proxy["NO_PROXY"] = proxy["no_proxy"] = ""
        # The trust store with the sandbox's CA in it, for every TLS stack's own variable.
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            proxy[name] = CA_BUNDLE
        proxy["NODE_EXTRA_CA_CERTS"] = CA_CERT
    return {
        **proxy,
        "PATH": SANDBOX_PATH,
        # Not the workspace: programs run what they find in $HOME (a Python .pth file, a
        # .gitconfig alias), and the workspace is where untrusted content is written.
        "HOME": "/tmp",
        "PYTHONNOUSERSITE": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "TERM": "dumb",
        "HERMITCRAB_SANDBOX": "1",
    }


def write_etc(folder: Path, uid: int) -> None:
    """A passwd that knows only the sandbox user: the host's accounts stay unseen."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "passwd": f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}::{WORKSPACE_MOUNT}:/bin/sh\n"
        "nobody:x:65534:65534::/:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)


def binds(spec: SandboxSpec, etc_dir: Path) -> list[tuple[str, str, str]]:
    """Every host path the sandbox sees, as (bwrap flag, host path, path inside)."""
    fs = spec.policy.filesystem
    out: list[tuple[str, str, str]] = []
    if spec.layers.binds:
        # filesystem.read_only: bound read-only, nothing else of the host.
        out += [("--ro-bind", p, p) for p in fs.read_only if os.path.lexists(p)]
    # filesystem.read_write: bound read-write.
    out += [("--bind", p, p) for p in fs.read_write if os.path.exists(p)]
    out += [("--bind", p, p) for p in spec.layers.unlisted_rw_binds]
    # workspace: read-write at /workspace.
    out.append(("--bind", str(spec.workspace), WORKSPACE_MOUNT))
    # Our own passwd, group, hosts: the host's accounts stay unseen.
    out += [("--ro-bind", str(etc_dir / name), f"/etc/{name}") for name in ETC_FILES]
    # The egress proxy's socket: the one way out, if the sandbox has one.
    if spec.egress_socket is not None:
        out.append(("--ro-bind", str(spec.egress_socket), EGRESS_SOCKET))
    if spec.ca_cert is not None and spec.ca_bundle is not None:
        out += [("--ro-bind", str(spec.ca_cert), CA_CERT), ("--ro-bind", str(spec.ca_bundle), CA_BUNDLE)]
    return out


def plan(
    spec: SandboxSpec,
    etc_dir: Path,
    seccomp_fd: int | None,
    info_fd: int,
    staged: dict[str, str] | None = None,
) -> Plan:
    """`staged` maps host paths to where the launcher re-mounted them for bwrap to reach
    (see stage.py); paths not in it are bound from where they are."""
    policy = spec.policy
    fs = policy.filesystem
    layers = spec.layers
    uid = policy.process.run_as_uid
    out = Plan(["bwrap"])
    a = out.argv.extend

    staged = staged or {}

    def source(path: str | Path) -> str:
        return staged.get(str(path), str(path))

    # Namespaces: user, mount (implied), pid, ipc, uts, net, cgroup; no nested user namespaces.
    a(["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"])
    a(["--unshare-cgroup", "--disable-userns", "--hostname", HOSTNAME])
    # process.run_as_uid: the only identity inside.
    a(["--uid", str(uid), "--gid", str(uid)])
    # Lifetime and privileges: dies with its owner, no terminal to inject into, no capabilities.
    a(["--die-with-parent", "--new-session", "--cap-drop", "ALL"])
    # The supervisor is pid 1: unkillable from inside, and the reaper of every orphan.
    a(["--as-pid-1"])
    if not layers.binds:
        # Tests only: the whole host, read-only, to prove that Landlock alone holds.
        for entry in sorted(os.listdir("/")):
            host = f"/{entry}"
            if entry in ("proc", "sys", "dev", "tmp", "workspace"):
                continue
            if os.path.islink(host):
                a(["--symlink", os.readlink(host), host])
            elif os.path.isdir(host):
                a(["--ro-bind", host, host])
    # Environment: none of the host's.
    a(["--clearenv"])
    for key, value in sandbox_env(spec).items():
        a(["--setenv", key, value])
    a(["--setenv", "MALLOC_ARENA_MAX", "2"])  # the supervisor's own: keeps it small under RLIMIT_AS

    # A private /tmp of bounded size, first: a path the policy binds from under the host's
    # /tmp (a checkout there, a test's folder) must land on it, not be hidden beneath it.
    a(["--size", str(fs.tmp_size_mb * 1024 * 1024), "--tmpfs", "/tmp"])
    for flag, host, dest in binds(spec, etc_dir):
        a([flag, source(host), dest])
    # A /proc of the sandbox's own pids, a minimal /dev.
    a(["--proc", "/proc", "--dev", "/dev"])
    if seccomp_fd is not None:
        out.pass_fds.append(seccomp_fd)
        a(["--seccomp", str(seccomp_fd)])
    out.pass_fds.append(info_fd)
    a(["--info-fd", str(info_fd), "--chdir", WORKSPACE_MOUNT])

    # Landlock, applied by the supervisor: the same paths again, so a bind mistake is still caught.
    out.landlock_rules = (
        [(p, sup.READ) for p in fs.read_only]
        + [(f"/etc/{name}", sup.FS_READ_FILE) for name in ETC_FILES]
        + [("/proc", sup.FS_READ_FILE | sup.FS_READ_DIR), ("/dev", sup.READ_WRITE_DEV)]
        + [(p, ALL_FS) for p in fs.read_write]
        + [("/tmp", ALL_FS), (WORKSPACE_MOUNT, ALL_FS)]
        + ([(CA_CERT, sup.FS_READ_FILE), (CA_BUNDLE, sup.FS_READ_FILE)] if spec.ca_cert else [])
    )
    return out


def supervisor_config(
    spec: SandboxSpec, rules: list[tuple[str, int]], listen_fd: int, status_fd: int
) -> dict[str, Any]:
    policy = spec.policy
    process = policy.process
    layers = spec.layers
    rlimits = (
        {
            "max_processes": process.max_processes,
            "max_memory_mb": process.address_space_mb or process.max_memory_mb,
            "max_file_size_mb": process.max_file_size_mb,
            "max_open_files": process.max_open_files,
            "cpu_seconds": process.cpu_seconds,
        }
        if layers.rlimits
        else {}
    )
    return {
        "egress": {"port": EGRESS_PORT, "socket": EGRESS_SOCKET} if spec.egress_socket else None,
        "listen_fd": listen_fd,
        "status_fd": status_fd,
        "landlock": {"mode": policy.filesystem.landlock if layers.landlock else "off", "rules": rules},
        "rlimits": rlimits,
        "timeout": process.timeout_seconds,
        "background": process.background_processes,
        "max_output": process.max_output_bytes,
        "output_dir": f"{WORKSPACE_MOUNT}/.hermitcrab/output",
        "cwd": WORKSPACE_MOUNT,
        "env": sandbox_env(spec),
    }
