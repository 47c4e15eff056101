"""`up`, `down`, `status`, `logs`: the gateway daemon's life, seen from outside."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError, HermitCrabError

READY_FD_ENV = "HERMITCRAB_READY_FD"  # the daemon writes "ready" here once it listens


def running_pid(paths: Paths) -> int | None:
    """The gateway's pid if its pidfile is locked by a live process."""
    import fcntl

    try:
        with paths.pidfile.open() as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else None
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None  # a stale file: nobody holds the lock
    except FileNotFoundError:
        return None


def up(foreground: bool) -> None:
    """Start the gateway and return once it answers. The daemon starts first and the
    config is read here while it does: both read the same file, and the daemon tells us
    through a pipe when it listens (no polling)."""
    from hermitcrab.config.loader import load_config  # pydantic: after the daemon is on its way

    paths = Paths.from_env()
    pid = running_pid(paths)
    if pid is not None:
        gateway = load_config(paths.config).gateway
        print(f"HermitCrab is already running (pid {pid}) at {gateway.local_url}")
        return
    if foreground:
        load_config(paths.config)  # fail here, loudly, before anything starts
        from hermitcrab.gateway.server import serve

        serve(paths, foreground=True)
        return
    started = time.perf_counter()
    paths.logs.mkdir(parents=True, exist_ok=True)
    out = os.fdopen(os.open(paths.logs / "gateway.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    os.chmod(paths.logs / "gateway.out", 0o600)
    ready_r, ready_w = os.pipe()
    child = subprocess.Popen(
        # -P: the folder `up` was run from is not on the import path (it may be a workspace,
        # where a sandbox can write a module named like one the gateway imports).
        [sys.executable, "-P", "-m", "hermitcrab.gateway", "--quiet"],
        cwd=paths.home,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,  # the daemon outlives this terminal
        pass_fds=[ready_w],
        env={**os.environ, "HERMITCRAB_HOME": str(paths.home), READY_FD_ENV: str(ready_w)},
    )
    out.close()
    os.close(ready_w)
    try:
        config = load_config(paths.config)
    except HermitCrabError:
        child.wait(10)  # it finds the same fault and says so in its log; ours is the message
        os.close(ready_r)
        raise
    timeout = config.gateway.startup_timeout_seconds
    with os.fdopen(ready_r, "rb") as ready:
        answered = select.select([ready], [], [], timeout)[0] and ready.readline().strip() == b"ready"
    if answered:
        took = time.perf_counter() - started
        print(f"HermitCrab is up at {config.gateway.local_url} (pid {child.pid}, ready in {took:.2f} s)")
        return
    if child.poll() is not None or _exited_soon(child):
        tail = _tail(paths.logs / "gateway.out", 15)
        fail(f"the gateway exited during start-up (code {child.returncode}):\n{tail}")
    child.terminate()
    fail(f"the gateway did not become healthy within {timeout:g} s; see `hermitcrab logs`")


def _exited_soon(child: subprocess.Popen[bytes]) -> bool:
    """The pipe closed without a word: the child is on its way out."""
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        return False
    return True


def down() -> None:
    from hermitcrab.config.loader import load_config  # pydantic: after the daemon is on its way

    paths = Paths.from_env()
    pid = running_pid(paths)
    if pid is None:
        print("HermitCrab is not running.")
        return
    config = load_config(paths.config)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + config.gateway.shutdown_timeout_seconds + 5
    while time.monotonic() < deadline:
        if running_pid(paths) is None:
            print(f"HermitCrab stopped (pid {pid}).")
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    print(f"HermitCrab did not stop in time and was killed (pid {pid}).")


def status(json_output: bool) -> None:
    paths = Paths.from_env()
    info: dict[str, Any]
    pid = running_pid(paths)
    if pid is None:
        info = {"running": False, "pid": None, "url": None, "model": None, "home": str(paths.home)}
    else:
        from hermitcrab.cli.client import GatewayClient

        try:
            info = GatewayClient(paths).request("GET", "/api/status")
        except GatewayError as exc:
            info = {"running": True, "pid": pid, "url": None, "model": None, "error": str(exc)}
    if json_output:
        print_json(info)
    elif not info["running"]:
        print(f"HermitCrab is not running (home {paths.home}). Start it with `hermitcrab up`.")
    else:
        _print_status(info)
    if not info["running"]:
        raise SystemExit(1)


def dashboard_url() -> str:
    from hermitcrab.cli.client import GatewayClient

    client = GatewayClient(Paths.from_env())
    return f"{client.base_url}/#token={client.token}"


def _print_status(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key in ("url", "pid", "version", "home", "uptime_seconds", "default_agent", "model", "turns_running"):
        if key in info:
            table.add_row(key, str(info[key]))
    for name, model in info.get("models", {}).items():
        table.add_row(f"model {name}", ", ".join(f"{k}={v}" for k, v in model.items()))
    for box in info.get("sandboxes", []):
        table.add_row(
            f"sandbox {box['name']}",
            f"landlock={box['landlock']} memory={box.get('memory_cap')} processes={box['processes']} "
            f"host_uid={box.get('host_uid')}",
        )
    if "error" in info:
        table.add_row("error", info["error"])
    console = Console()
    console.print("[bold green]HermitCrab is running[/]")
    console.print(table)
    for box in info.get("sandboxes", []):
        if box.get("best_effort"):
            console.print(
                f"[bold red]WARNING: sandbox {box['name']} runs these layers best effort only: "
                f"{', '.join(box['best_effort'])}[/]"
            )
    if info.get("policy_error"):
        console.print("[bold red]The policy file does not load; the last good policy stays in force:[/]")
        console.print(info["policy_error"], markup=False)
    for count, error, what in (
        ("audit_lost", "audit_error", "audit entries"),
        ("store_writes_lost", "store_error", "store writes"),
    ):
        if info.get(count):
            console.print(f"[bold red]{info[count]} {what} could not be written:[/]")
            console.print(str(info.get(error)), markup=False)
    if info.get("approvals_pending"):
        waiting = info["approvals_pending"]
        console.print(f"[bold yellow]{waiting} request(s) wait for approval: `hermitcrab approvals`[/]")


def _tail(path: Path, count: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return "(no output)"


def _pretty(line: str) -> str:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return line
    fixed = {"ts", "level", "logger", "msg"}
    rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in fixed)
    return f"{entry.get('ts', '')} {entry.get('level', ''):7} {entry.get('msg', '')} {rest}".rstrip()


def logs(follow: bool, lines: int, raw: bool) -> None:
    paths = Paths.from_env()
    path = paths.gateway_log
    if not path.exists():
        fail(f"no log yet at {path}. fix: start the gateway with `hermitcrab up`")
    show = (lambda s: s) if raw else _pretty
    with path.open(errors="replace") as handle:
        for line in handle.read().splitlines()[-lines:] if lines > 0 else []:
            print(show(line))
        if not follow:
            return
        try:
            while True:
                line = handle.readline()
                if line:
                    print(show(line.rstrip("\n")), flush=True)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return
