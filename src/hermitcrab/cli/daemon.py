"""`up`, `down`, `status`, `logs`: the gateway daemon's life, seen from outside."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, NoReturn

from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError, HermitCrabError

READY_FD_ENV = "HERMITCRAB_READY_FD"  # the daemon's words to `up` (gateway.server.tell_starter)
CONFIG_LOAD_SECONDS = 60.0  # until the daemon has read the config and says how long to wait


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
    """Start the gateway and return once it answers. This process reads no config (pydantic
    alone would cost 0.1 s before the daemon even starts): the daemon reads it and says
    through a pipe how long to wait, then that it listens (and where), or what is wrong."""
    paths = Paths.from_env()
    pid = running_pid(paths)
    if pid is not None:
        from hermitcrab.config.loader import load_config

        gateway = load_config(paths.config).gateway
        print(f"HermitCrab is already running (pid {pid}) at {gateway.local_url}")
        return
    if foreground:
        from hermitcrab.config.loader import load_config

        load_config(paths.config)  # fail here, loudly, before anything starts
        from hermitcrab.gateway.server import serve

        serve(paths, foreground=True)
        return
    started = time.perf_counter()
    paths.crashes.unlink(missing_ok=True)  # a person starts it: a stopped crash loop may go again
    paths.logs.mkdir(parents=True, exist_ok=True)
    out = os.open(paths.logs / "gateway.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.chmod(paths.logs / "gateway.out", 0o600)
    ready_r, ready_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the daemon: this interpreter, with what it has imported, goes on
        _become_daemon(paths, out, ready_w)
    child = _Child(pid)
    os.close(out)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as pipe:
        word, value = _starter_word(pipe, CONFIG_LOAD_SECONDS)
        timeout = CONFIG_LOAD_SECONDS
        if word == "timeout":
            timeout = float(value)
            word, value = _starter_word(pipe, timeout)
    if word == "ready":
        took = time.perf_counter() - started
        print(f"HermitCrab is up at {value} (pid {child.pid}, ready in {took:.2f} s)")
        return
    if word == "error":
        child.wait(10)
        raise HermitCrabError(json.loads(value))
    if child.poll() is not None or _exited_soon(child):
        tail = _tail(paths.logs / "gateway.out", 15)
        fail(f"the gateway exited during start-up (code {child.returncode}):\n{tail}")
    child.terminate()
    fail(f"the gateway did not become healthy within {timeout:g} s; see `hermitcrab logs`")


def _become_daemon(paths: Paths, out: int, ready: int) -> NoReturn:
    """In the forked child: detach (own session, no terminal, log files for output, the
    home as working folder) and serve; never returns to the CLI. Forking, not starting a
    new interpreter, saves its start-up and the imports `up` already made."""
    code = 1
    try:
        os.setsid()  # the daemon outlives this terminal
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(out, 1)
        os.dup2(out, 2)
        # Nothing else `up` was handed stays open: a caller waiting for its pipes to close
        # (a CI runner, a test) must not wait on the daemon.
        os.closerange(3, ready)
        os.closerange(ready + 1, 1 << 16)
        os.set_inheritable(ready, False)  # the sandboxes this daemon starts never see it
        os.chdir(paths.home)
        # The folder `up` ran from (or its script's) leads the import path unless -P: it may
        # be a workspace, where a sandbox can write a module named like one we import.
        if not sys.flags.safe_path and sys.path:
            del sys.path[0]
        os.environ["HERMITCRAB_HOME"] = str(paths.home)
        os.environ[READY_FD_ENV] = str(ready)
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # we use none; the lookup is slow
        from hermitcrab.gateway.server import run_daemon

        code = run_daemon(paths, foreground=False)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class _Child:
    """The forked daemon, seen from `up`: Popen's wait/poll for a pid we forked."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


def _starter_word(pipe: IO[bytes], timeout: float) -> tuple[str, str]:
    """The daemon's next line on the ready pipe: ("", "") if it said nothing in time or
    closed the pipe (it exited)."""
    if not select.select([pipe], [], [], timeout)[0]:
        return "", ""
    word, _, value = pipe.readline().decode(errors="replace").strip().partition(" ")
    return word, value


def _exited_soon(child: _Child) -> bool:
    """The pipe closed without a word: the child is on its way out."""
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        return False
    return True


def down() -> None:
    from hermitcrab.config.loader import load_config

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
        service = _service_state()
        if service is not None:
            info["service"] = service
    else:
        from hermitcrab.cli.client import GatewayClient

        try:
            info = GatewayClient(paths).request("GET", "/api/status")
        except GatewayError as exc:
            info = {"running": True, "pid": pid, "url": None, "model": None, "error": str(exc)}
    from hermitcrab.gateway.crashes import CrashLedger

    crashes = CrashLedger(paths.crashes).summary()
    if crashes is not None:
        info["crashes"] = crashes
    if json_output:
        print_json(info)
    elif not info["running"]:
        print(f"HermitCrab is not running (home {paths.home}). Start it with `hermitcrab up`.")
        _print_trouble(info)
    else:
        _print_status(info)
        _print_trouble(info)
    if not info["running"]:
        raise SystemExit(1)


def _service_state() -> dict[str, str] | None:
    """The systemd user unit's state, where one is installed and a user manager runs."""
    from hermitcrab.cli.service import UNIT, systemctl, unit_path

    if not unit_path().exists():
        return None
    shown = systemctl("show", UNIT, "--property=ActiveState,SubState,Result,NRestarts")
    if shown is None or shown.returncode != 0:
        return None
    fields = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    return {
        "unit": UNIT,
        "active": fields.get("ActiveState", ""),
        "sub": fields.get("SubState", ""),
        "result": fields.get("Result", ""),
        "restarts": fields.get("NRestarts", ""),
    }


def _print_trouble(info: dict[str, Any]) -> None:
    """Crash loops and a failed service unit, said plainly whatever else status shows."""
    crashes = info.get("crashes") or {}
    if crashes.get("stopped"):
        stopped = crashes["stopped"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stopped["at"]))
        print(
            f"CRASH LOOP: the gateway stopped starting on its own at {when}, after {stopped['count']} "
            f"unclean ends in 10 minutes. Last: {stopped['why']}\n"
            "Read `hermitcrab logs`, mend the cause, then `hermitcrab up`."
        )
    elif crashes.get("recent"):
        last = crashes["last"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
        print(f"{crashes['recent']} unclean end(s) in the last 10 minutes; the last at {when}: {last['why']}")
    service = info.get("service") or {}
    if service.get("active") == "failed":
        print(
            f"The service {service['unit']} failed ({service['result']}, {service['restarts']} restarts): "
            f"`journalctl --user -u {service['unit']}` says why; `systemctl --user reset-failed "
            f"{service['unit']}` once mended."
        )


def dashboard_url() -> str:
    from hermitcrab.cli.client import GatewayClient

    client = GatewayClient(Paths.from_env())
    return f"{client.base_url}/#token={client.token}"


def _print_status(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None)
    glance = ("url", "pid", "version", "home", "uptime_seconds", "default_agent", "model", "sessions")
    for key in (*glance, "turns_running"):
        if key in info:
            table.add_row(key, str(info[key]))
    if "spend_today_usd" in info:
        table.add_row("spend today", f"${info['spend_today_usd']:.4f}")
    if info.get("queue"):
        table.add_row("waiting at models", ", ".join(f"{m}={n}" for m, n in info["queue"].items()))
    for job in info.get("jobs_next", []):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["next_due"]))
        table.add_row(f"job {job['id']}", f"{job['name']} ({job['agent']}) next at {when}")
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
    if info.get("last_error"):
        last = info["last_error"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
        table.add_row("last error", Text(f"{when} {last['logger']}: {last['msg']}"))
    scheduler = info.get("scheduler") or {}
    if scheduler.get("last_error"):
        table.add_row("scheduler error", str(scheduler["last_error"]))
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
