"""`hermitcrab chat`'s terminal UI, driven by Textual's pilot against a real daemon: a
streamed reply, a held tool call decided with a key, a switch between sessions, and the
model at the foot. `--plain` keeps the line mode."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

from hermitcrab.cli.client import GatewayClient
from hermitcrab.config.paths import Paths
from tests.cli.conftest import acting_config, hc

pytest.importorskip("textual")
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


async def until(pilot, check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never: {what}")


def texts(app, selector: str) -> list[str]:
    return [str(line.render()) for line in app.query(selector)]


def test_a_reply_streams_in_and_sessions_switch(daemon_home: Paths) -> None:
    from textual.widgets import Input, ListView

    from hermitcrab.cli.tui import ChatApp, SessionItem

    assert hc(daemon_home, "up").returncode == 0

    async def run() -> None:
        app = ChatApp(GatewayClient(daemon_home), "first", None)
        async with app.run_test(size=(120, 40)) as pilot:
            app.query_one("#input", Input).value = "Bonjour?"
            await pilot.press("enter")
            await until(pilot, lambda: texts(app, ".reply") == ["Bonjour!"], "the reply")
            assert texts(app, ".user") == ["you: Bonjour?"]
            foot = app.query_one("#foot")
            await until(pilot, lambda: "model embedded" in str(foot.render()), "the model at the foot")
            assert "today" in str(foot.render())

            await pilot.press("ctrl+n")  # a new session: an empty conversation
            await until(pilot, lambda: texts(app, ".user") == [], "the new session")
            assert app.session.startswith("tui-")
            app.query_one("#input", Input).value = "Encore?"
            await pilot.press("enter")
            await until(pilot, lambda: texts(app, ".reply") == ["Second answer."], "the second reply")

            sessions = app.query_one("#sessions", ListView)
            await until(pilot, lambda: len(sessions.children) == 2, "both sessions listed")
            await pilot.press("f3")
            first = next(i for i, item in enumerate(sessions.children) if item.session_id == "first")
            sessions.index = first
            await pilot.press("enter")
            await until(pilot, lambda: texts(app, ".user") == ["you: Bonjour?"], "the first session again")
            assert all(isinstance(item, SessionItem) for item in sessions.children)

    asyncio.run(run())


def test_a_held_tool_call_is_decided_with_a_key(daemon_home: Paths) -> None:
    from textual.widgets import Input, ListView

    from hermitcrab.cli.tui import ApprovalItem, ChatApp

    daemon_home.config.write_text(acting_config("exec", {"command": "touch from-the-tui"}, "Done."))
    daemon_home.policy.write_text(daemon_home.policy.read_text().replace("  ask: []", "  ask: [exec]"))
    assert hc(daemon_home, "up").returncode == 0

    async def run() -> None:
        app = ChatApp(GatewayClient(daemon_home), "held", None)
        async with app.run_test(size=(120, 40)) as pilot:
            app.query_one("#input", Input).value = "Touch it, please."
            await pilot.press("enter")
            panel = app.query_one("#approvals", ListView)
            await until(pilot, lambda: len(panel.children) == 1, "the held call in the panel")
            (item,) = panel.children
            assert isinstance(item, ApprovalItem) and "exec: touch from-the-tui" in item.approval["summary"]
            assert item.approval["always_adds"] == "tools.allow: exec=touch from-the-tui"
            await pilot.press("y")  # typed into the message box: no decision is made by it
            assert app.query_one("#input", Input).value == "y" and len(panel.children) == 1
            app.query_one("#input", Input).value = ""
            await pilot.press("f2", "y")
            await until(pilot, lambda: texts(app, ".reply") == ["Done."], "the turn's end")
            await until(pilot, lambda: len(panel.children) == 0, "the panel emptied")
            assert any(line.startswith("→ exec") for line in texts(app, ".tool"))

    asyncio.run(run())
    assert (daemon_home.workspace / "from-the-tui").exists()


def test_plain_mode_is_a_line_prompt(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    chat = subprocess.run(
        [sys.executable, "-m", "hermitcrab", "chat", "--plain", "--session", "pipe"],
        input="Bonjour?\n/exit\n",
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "HERMITCRAB_HOME": str(daemon_home.home)},
        timeout=60,
    )
    assert chat.returncode == 0, chat.stderr
    assert "crab> Bonjour!" in chat.stdout
