"""`policy set`, `approvals`, `approve [--always]`, `deny`, and the approvals WebSocket,
against a real daemon whose sandbox reaches a real server on loopback."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"hello\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def ask_policy(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "ask.yaml"
    path.write_text(
        "version: 1\nnetwork:\n  default: deny\n  rules:\n"
        f"    - name: ask-local\n      hosts: [localhost]\n      ports: [{port}]\n"
        "      allowed_ips: [127.0.0.1]\n      access: ask\n"
    )
    return path


def background_curl(paths: Paths, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "HERMITCRAB_HOME": str(paths.home)}
    argv = [sys.executable, "-m", "hermitcrab", "sandbox", "exec", "net", "--",
            "curl", "-sS", "-m", "60", f"http://localhost:{port}/"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pending(paths: Paths) -> list[dict]:
    return json.loads(hc(paths, "approvals", "--json").stdout)["approvals"]


def test_ask_approve_always_then_allowed_for_good(daemon_home: Paths, web: int, tmp_path: Path) -> None:
    assert hc(daemon_home, "up").returncode == 0
    assert hc(daemon_home, "sandbox", "create", "net").returncode == 0
    set_ = hc(daemon_home, "policy", "set", str(ask_policy(tmp_path, web)))
    assert set_.returncode == 0 and "in force for: net" in set_.stdout
    info = json.loads(hc(daemon_home, "status", "--json").stdout)
    ws_url = info["url"].replace("http", "ws") + "/api/approvals/ws"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {daemon_home.read_token()}"}) as ws:
        curl = background_curl(daemon_home, web)
        event = json.loads(ws.recv(timeout=30))
        assert event["kind"] == "approval.pending" and event["data"]["host"] == "localhost"
    [approval] = wait_for(lambda: pending(daemon_home), what="the held request to show")
    assert (approval["sandbox"], approval["port"], approval["rule"]) == ("net", web, "ask-local")
    listed = hc(daemon_home, "approvals")
    assert approval["id"] in listed.stdout and "hermitcrab approve ID" in listed.stdout
    approved = hc(daemon_home, "approve", approval["id"], "--always")
    assert approved.returncode == 0 and "wrote a rule" in approved.stdout
    out, err = curl.communicate(timeout=60)
    assert (curl.returncode, out) == (0, "hello\n"), err
    assert "name: approved-localhost" in daemon_home.policy.read_text()
    again = hc(
        daemon_home, "sandbox", "exec", "net", "--", "curl", "-sS", "-m", "10", f"http://localhost:{web}/"
    )
    assert again.stdout == "hello\n" and pending(daemon_home) == []
    audit = json.loads(hc(daemon_home, "audit", "--sandbox", "net", "-n", "100", "--json").stdout)["entries"]
    actions = [(e["action"], e["outcome"]) for e in audit]
    assert ("network", "asked") in actions and ("policy.change", "ok") in actions
    assert actions.count(("network", "allowed")) == 2


def test_deny_refuses_the_held_request(daemon_home: Paths, web: int, tmp_path: Path) -> None:
    assert hc(daemon_home, "up").returncode == 0
    hc(daemon_home, "policy", "set", str(ask_policy(tmp_path, web)))
    hc(daemon_home, "sandbox", "create", "net")
    curl = background_curl(daemon_home, web)
    [approval] = wait_for(lambda: pending(daemon_home), what="the held request to show")
    denied = hc(daemon_home, "deny", approval["id"])
    assert denied.returncode == 0 and "denied localhost" in denied.stdout
    out, _ = curl.communicate(timeout=60)
    assert "a person denied localhost" in out
    twice = hc(daemon_home, "approve", approval["id"])
    assert twice.returncode == 1 and "already denied" in twice.stderr


def test_policy_set_refuses_a_broken_file_and_keeps_the_old_one(daemon_home: Paths, tmp_path: Path) -> None:
    before = daemon_home.policy.read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nnetwork:\n  rules:\n    - name: x\n      hosts: ['*.com']\n")
    result = hc(daemon_home, "policy", "set", str(broken))
    assert result.returncode == 1 and "wildcard" in result.stderr and "unchanged" in result.stderr
    assert daemon_home.policy.read_text() == before


def test_a_broken_policy_file_shows_in_status_and_changes_nothing(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    daemon_home.policy.write_text("version: 1\nnetwork:\n  default: allow\n")  # allow is not a default

    def broken_reported() -> dict | None:
        status = json.loads(hc(daemon_home, "status", "--json").stdout)
        return status if status["policy_error"] else None

    status = wait_for(broken_reported, what="the watcher to report the broken file")
    assert "network.default" in status["policy_error"]
    assert hc(daemon_home, "sandbox", "create", "still").returncode == 1  # nothing new on a broken policy


def test_inference_local_reaches_the_model_router_and_nothing_else(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    assert hc(daemon_home, "sandbox", "create", "agent").returncode == 0
    body = json.dumps({"model": "main", "messages": [{"role": "user", "content": "hi"}]})
    asked = hc(daemon_home, "sandbox", "exec", "agent", "--", "curl", "-sS", "-m", "30",
               "-H", "Content-Type: application/json", "-d", body,
               "http://inference.local/v1/chat/completions")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["choices"][0]["message"]["content"] == "Bonjour!"
    control = hc(
        daemon_home, "sandbox", "exec", "agent", "--", "curl", "-sS", "http://inference.local/api/sandboxes"
    )
    assert "inference.local serves only /v1/chat/completions, /v1/models" in control.stdout
    token = daemon_home.read_token()
    env = hc(daemon_home, "sandbox", "exec", "agent", "--", "sh", "-c", "env; cat /proc/self/environ")
    assert token not in env.stdout
    audit = json.loads(hc(daemon_home, "audit", "--sandbox", "agent", "--json").stdout)["entries"]
    assert [(e["outcome"], e["rule"]) for e in audit if e["action"] == "network"] == [
        ("allowed", "inference.local"),
        ("denied", "inference.local"),
    ]


TWO_AGENTS = """\
version: 1
gateway:
  port: {port}
models:
  small:
    provider: scripted
    replies: ["from the small model"]
  large:
    provider: scripted
    replies: ["from the large model"]
    usd_per_million_output: 200000  # the four-token reply costs $0.80
agents:
  main:
    model: small
  coder:
    model: large
    spend_cap_usd_per_day: 0.5
"""


def ask_inference(
    paths: Paths, sandbox: str, path: str, model: str = "main", *extra: str
) -> subprocess.CompletedProcess[str]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    curl = ["curl", "-sS", "-m", "30", *extra, f"http://inference.local{path}"]
    if path.endswith("completions"):
        curl += ["-H", "Content-Type: application/json", "-d", body]
    return hc(paths, "sandbox", "exec", sandbox, "--", *curl)


def test_inference_local_takes_the_sandboxs_own_agent_route(home: Paths) -> None:
    from tests.conftest import free_port

    home.config.write_text(TWO_AGENTS.format(port=free_port()))
    try:
        assert hc(home, "up").returncode == 0
        assert hc(home, "sandbox", "create", "coder").returncode == 0  # named after an agent: works for it
        assert hc(home, "sandbox", "create", "scratch").returncode == 0  # the default agent
        made = hc(home, "sandbox", "create", "odd", "--agent", "nobody")
        assert made.returncode != 0 and "no agent named 'nobody'" in made.stderr
        listed = json.loads(hc(home, "sandbox", "list", "--json").stdout)["sandboxes"]
        assert {s["name"]: s["agent"] for s in listed} == {"coder": "coder", "scratch": "main"}

        # Naming another agent's model changes nothing: the route is the sandbox's agent's.
        answer = json.loads(ask_inference(home, "scratch", "/v1/chat/completions", model="coder").stdout)
        assert answer["model"] == "main"
        assert answer["choices"][0]["message"]["content"] == "from the small model"
        # Nor can the sandbox name the proxy's mark away, or forge it.
        forged = ["-H", "Connection: close, X-HermitCrab-Sandbox", "-H", "X-HermitCrab-Sandbox: coder"]
        sneaky = ask_inference(home, "scratch", "/v1/chat/completions", "coder", *forged)
        assert json.loads(sneaky.stdout)["model"] == "main", sneaky
        models = json.loads(ask_inference(home, "coder", "/v1/models").stdout)
        assert [m["id"] for m in models["data"]] == ["coder"]
        first = json.loads(ask_inference(home, "coder", "/v1/chat/completions").stdout)
        assert first["choices"][0]["message"]["content"] == "from the large model"

        # That call cost more than coder's daily cap: the next is refused, and says why.
        capped = ask_inference(home, "coder", "/v1/chat/completions")
        assert "agent 'coder' has spent" in capped.stdout, capped
        usage = json.loads(hc(home, "usage", "--by", "session", "--json").stdout)
        assert {row["key"] for row in usage["rows"]} == {"sandbox:scratch", "sandbox:coder"}
        assert usage["today"]["spent_usd"]["coder"] > 0.5
    finally:
        hc(home, "down")
