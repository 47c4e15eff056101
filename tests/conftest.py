"""Fixtures that build real things: a HERMITCRAB_HOME on disk, a gateway on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import Paths
from hermitcrab.inference import Provider
from hermitcrab.inference.scripted import ScriptedProvider

SCRIPTED_CONFIG = """\
version: 1
gateway:
  port: {port}
models:
  embedded:
    provider: scripted
    replies: {replies}
agents:
  main:
    model: embedded
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `predicate` returns something truthy; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """wait_for for state the event loop changes: polls while letting the loop run (a
    sync wait_for between run() calls would watch a loop that stands still)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per module, run from the main thread: sandboxes die with the thread
    that made them, so they are made, used and destroyed here."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    return loop.run_until_complete


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A fresh, onboarded HERMITCRAB_HOME whose model is scripted and whose port is free."""
    from hermitcrab.cli.onboard import run as onboard

    monkeypatch.setenv("HERMITCRAB_HOME", str(tmp_path / "home"))
    onboard(yes=True)
    paths = Paths.from_env()
    paths.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies='["Hello from the script."]'))
    return paths


@dataclass
class LiveGateway:
    url: str
    token: str
    gateway: Any
    loop: asyncio.AbstractEventLoop

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30, trust_env=False)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn in the gateway's event loop (asyncio objects belong to their loop)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def events(self, session_id: str) -> list[dict[str, Any]]:
        with self.client() as c:
            response = c.get(f"/api/sessions/{session_id}/events")
        return response.json()["events"] if response.status_code == 200 else []

    def wait_answers(self, session_id: str, count: int) -> list[dict[str, Any]]:
        def answers() -> list[dict[str, Any]]:
            found = [e for e in self.events(session_id) if e["kind"] in ("reply", "turn.failed")]
            return found if len(found) >= count else []

        return wait_for(answers, what=f"{count} answers in session {session_id}")


@pytest.fixture
def live_gateway(home: Paths) -> Iterator[Callable[..., LiveGateway]]:
    """Start the real ASGI app under uvicorn in a thread, with the providers a test gives."""
    import uvicorn

    from hermitcrab.gateway.app import build_app
    from hermitcrab.gateway.service import Gateway

    running: list[tuple[Any, threading.Thread]] = []

    def start(providers: dict[str, Provider] | None = None, clock: Any = None) -> LiveGateway:
        config = load_config(home.config)
        gateway = Gateway(home, config, providers or {"embedded": ScriptedProvider("embedded")}, clock)
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(gateway),
                host="127.0.0.1",
                port=config.gateway.port,
                log_config=None,
                lifespan="on",
            )
        )
        loops: list[asyncio.AbstractEventLoop] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            loops.append(loop)
            loop.run_until_complete(server.serve())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        wait_for(lambda: server.started, what="the gateway to start")
        running.append((server, thread))
        return LiveGateway(gateway.url, home.read_token(), gateway, loops[0])

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session", autouse=True)
def _release_capped_workspaces() -> Iterator[None]:
    """A stopped sandbox keeps its capped workspace mounted (so its files stay in view);
    the suite's temporary ones are let go at its end, loop devices with them."""
    yield
    release_temporary_loops()


def release_temporary_loops() -> None:
    import subprocess
    import tempfile

    roots = (tempfile.gettempdir(), "/var/tmp")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        left, _, right = line.partition(" - ")
        point, kind = left.split()[4].replace("\\040", " "), right.split()
        ours = len(kind) >= 2 and kind[0] == "ext4" and kind[1].startswith("/dev/loop")
        ours = ours and point.startswith(roots)
        if ours and subprocess.run(["umount", point], capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True)
    for device in Path("/sys/block").glob("loop*"):
        backing = device / "loop" / "backing_file"
        try:
            source = backing.read_text().strip()
        except OSError:
            continue
        if source.startswith(roots):
            subprocess.run(["losetup", "-d", f"/dev/{device.name}"], capture_output=True)


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """For a test that calls setup_logging: the root logger as it was, afterwards."""
    import logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
