"""A configured MCP server behind OAuth 2.1: a person signs in once with `hermitcrab mcp
login`, the tokens stay in the secrets store (never in a sandbox), and the gateway uses and
refreshes them on its connection through the sandbox's door. The server is built on the
official SDK's server side, and is its own authorization server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import SecretStore
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for
from tests.tools.mcp.conftest import listening

pytest.importorskip("mcp")
TOKEN_SECONDS = 2
PEER = Path(__file__).parent / "peers" / "oauth_server.py"


@dataclass
class NotesServer:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/mcp"

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[NotesServer]:
    server = NotesServer(free_port(), tmp_path / "notes-server.log")
    process = subprocess.Popen(
        [sys.executable, str(PEER), str(server.port), str(TOKEN_SECONDS), str(server.log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening(server.port, process, "the OAuth server")
        yield server
    finally:
        process.terminate()
        process.wait(10)


def configure(home: Paths, server: NotesServer) -> None:
    replies = json.dumps([{"calls": [{"name": "notes__read_note", "arguments": {}}]}, "Done."])
    home.config.write_text(
        SCRIPTED_CONFIG.format(port=free_port(), replies=replies)
        + f"\nmcp:\n  servers:\n    notes:\n      url: {server.url}\n      oauth: true\n"
    )
    policy = home.policy.read_text().replace(
        "memory_search, memory_write]", "memory_search, memory_write, notes__*]"
    )
    rule = (f"  rules:\n    - name: notes\n      hosts: [localhost]\n      ports: [{server.port}]\n"
            "      allowed_ips: [127.0.0.1]\n      access: allow")  # fmt: skip
    home.policy.write_text(policy.replace("  rules: []", rule, 1))


def login(home: Paths, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hermitcrab", "mcp", "login", "notes", "--no-browser", *extra],
        env={**__import__("os").environ, "HERMITCRAB_HOME": str(home.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sign_in(home: Paths) -> str:
    """Run `mcp login` as a person would: open the address it shows (the test server
    approves at once and sends the browser back to the login's listener)."""
    person = login(home, "--timeout", "60")
    assert person.stdout is not None
    address = ""
    for line in person.stdout:
        if line.strip().startswith("http"):
            address = line.strip()
            break
    assert address, "mcp login showed no sign-in address"
    page = httpx.get(address, follow_redirects=True, trust_env=False, timeout=30)
    assert page.status_code == 200 and page.text == "Signed in. You can close this page."
    said = person.stdout.read()
    assert person.wait(60) == 0, said
    return said


def mcp_state(home: Paths) -> dict:
    def settled() -> dict | None:
        listed = hc(home, "mcp", "list", "--json")
        servers = json.loads(listed.stdout)["servers"] if listed.returncode == 0 else []
        return next((s for s in servers if s["server"] == "notes" and s["state"] != "starting"), None)

    return wait_for(settled, what="the notes server's state")


def test_sign_in_once_then_the_gateway_uses_and_refreshes_the_tokens(home: Paths, notes: NotesServer) -> None:
    configure(home, notes)
    try:
        # Before anyone signed in: the server is said to need it, and how.
        assert hc(home, "up").returncode == 0
        hc(home, "ask", "Read my note", "--json")
        before = mcp_state(home)
        assert before["state"] == "failed" and "hermitcrab mcp login notes" in before["error"], before
        hc(home, "down")

        said = sign_in(home)
        assert "Signed in to notes" in said and "'mcp-notes'" in said
        grant = SecretStore(home.secrets).grant("mcp-notes")
        assert grant is not None and grant.resource == notes.url and grant.client
        assert home.secrets.stat().st_mode & 0o777 == 0o600
        first = grant.tokens["access_token"]
        assert [e["grant"] for e in notes.events() if e["event"] == "issued"] == ["authorization_code"]

        time.sleep(TOKEN_SECONDS + 1)  # the stored access token has ended: the gateway must refresh it
        assert hc(home, "up").returncode == 0
        asked = hc(home, "ask", "Read my note", "--json")
        assert asked.returncode == 0, asked.stderr
        result = next(e for e in json.loads(asked.stdout)["events"] if e["kind"] == "tool.result")["data"]
        assert result["content"] == "The spare key is under the blue pot." and not result["error"], result
        assert result["taint"].startswith("MCP server notes")
        # Through the sandbox's door, audited as its network requests are.
        audit = json.loads(hc(home, "audit", "--json").stdout)["entries"]
        assert any(e["action"] == "network" and f"localhost:{notes.port}" in json.dumps(e) for e in audit)
    finally:
        hc(home, "down")

    issued = [e for e in notes.events() if e["event"] == "issued"]
    assert [e["grant"] for e in issued] == ["authorization_code", "refresh_token"]
    refreshed = issued[-1]["access"]
    # The call carried the refreshed token (an ended one is refused), and the store has it.
    assert [e["access"] for e in notes.events() if e["event"] == "called"][-1] == refreshed
    stored = SecretStore(home.secrets).grant("mcp-notes")
    assert stored is not None and stored.tokens["access_token"] == refreshed != first
    # The tokens are in the secrets store and nowhere else in the home: not in the
    # workspace a sandbox sees, not in the logs, not in the store's audit.
    for path in home.home.rglob("*"):
        if path.is_file() and path != home.secrets:
            data = path.read_bytes()
            assert first.encode() not in data and refreshed.encode() not in data, path


def test_a_sign_in_nobody_finishes_fails_clearly_and_keeps_the_old_one(
    home: Paths, notes: NotesServer
) -> None:
    configure(home, notes)
    sign_in(home)
    kept = SecretStore(home.secrets).grant("mcp-notes")
    person = login(home, "--timeout", "1")
    said, _ = person.communicate(timeout=60)
    assert person.returncode == 1 and "no sign-in came back within 1 s" in said, said
    assert SecretStore(home.secrets).grant("mcp-notes") == kept

    unknown = hc(home, "mcp", "login", "nope", "--no-browser")
    assert (
        unknown.returncode == 1
        and "no MCP server named 'nope'" in unknown.stderr
        and "notes" in unknown.stderr
    )
    assert hc(home, "mcp", "logout", "notes").returncode == 0
    assert SecretStore(home.secrets).grant("mcp-notes") is None
    listed = hc(home, "secrets", "list")
    assert "mcp-notes" not in listed.stdout
