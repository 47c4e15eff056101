"""`hermitcrab sandbox`, `policy`, `audit` and `bench sandbox`, as a person runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def running(daemon_home: Paths) -> Paths:
    assert hc(daemon_home, "up").returncode == 0
    return daemon_home


def test_exec_runs_as_an_unprivileged_uid_and_cannot_read_shadow(running: Paths) -> None:
    created = hc(running, "sandbox", "create", "work")
    assert created.returncode == 0, created.stderr
    assert "landlock=enforced" in created.stdout
    uid = hc(running, "sandbox", "exec", "work", "--", "id", "-u")
    assert uid.returncode == 0 and int(uid.stdout) > 0
    shadow = hc(running, "sandbox", "exec", "work", "--", "cat", "/etc/shadow")
    assert shadow.returncode != 0 and shadow.stdout == ""
    assert "No such file" in shadow.stderr


def test_exec_passes_exit_code_streams_and_stdin(running: Paths) -> None:
    hc(running, "sandbox", "create", "io")
    mixed = hc(running, "sandbox", "exec", "io", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (mixed.returncode, mixed.stdout, mixed.stderr) == (7, "out\n", "err\n")
    piped = hc(running, "sandbox", "exec", "io", "--", "tr", "a-z", "A-Z", input="shell\n")
    assert piped.stdout == "SHELL\n"
    killed = hc(running, "sandbox", "exec", "io", "--timeout", "0.2", "--", "sleep", "10")
    assert killed.returncode == 137 and "timeout_seconds" in killed.stderr


def test_list_status_audit_destroy(running: Paths) -> None:
    hc(running, "sandbox", "create", "seen")
    hc(running, "sandbox", "exec", "seen", "--", "true")
    listed = json.loads(hc(running, "sandbox", "list", "--json").stdout)["sandboxes"]
    assert [(s["name"], s["running"], s["landlock"]) for s in listed] == [("seen", True, "enforced")]
    status = json.loads(hc(running, "sandbox", "status", "seen", "--json").stdout)
    assert status["run_as_uid"] == 1000 and status["processes"] == 1
    audit = json.loads(hc(running, "audit", "--sandbox", "seen", "--json").stdout)["entries"]
    assert [(e["action"], e["outcome"], e["actor"]) for e in audit] == [
        ("sandbox.create", "ok", "cli"),
        ("exec", "ok", "cli"),
    ]
    assert audit[1]["argv"] == ["true"] and audit[1]["exit_code"] == 0
    assert "exec" in hc(running, "audit").stdout
    assert hc(running, "sandbox", "destroy", "seen").returncode == 0
    gone = hc(running, "sandbox", "status", "seen")
    assert gone.returncode == 1 and "no sandbox named 'seen'" in gone.stderr


def test_sandbox_survives_a_gateway_restart(running: Paths) -> None:
    hc(running, "sandbox", "create", "durable")
    hc(running, "sandbox", "exec", "durable", "--", "sh", "-c", "echo still here > note")
    assert hc(running, "down").returncode == 0
    assert hc(running, "up").returncode == 0
    for _ in range(100):  # sandboxes come back just after the gateway answers
        listed = json.loads(hc(running, "sandbox", "list", "--json").stdout)["sandboxes"]
        if listed:
            break
    again = hc(running, "sandbox", "exec", "durable", "--", "cat", "note")
    assert again.returncode == 0 and again.stdout == "still here\n"


def test_snapshot_and_restore(running: Paths, tmp_path: Path) -> None:
    hc(running, "sandbox", "create", "orig")
    hc(running, "sandbox", "exec", "orig", "--", "sh", "-c", "echo data > kept")
    archive = tmp_path / "orig.tar.gz"
    snap = hc(running, "sandbox", "snapshot", "orig", str(archive))
    assert snap.returncode == 0 and archive.is_file()
    restored = hc(running, "sandbox", "restore", str(archive), "twin")
    assert restored.returncode == 0, restored.stderr
    assert hc(running, "sandbox", "exec", "twin", "--", "cat", "kept").stdout == "data\n"


def test_create_with_a_custom_and_a_broken_policy(running: Paths, tmp_path: Path) -> None:
    custom = tmp_path / "tight.yaml"
    custom.write_text("version: 1\nprocess:\n  run_as_uid: 4242\n")
    assert hc(running, "sandbox", "create", "tight", "--policy", str(custom)).returncode == 0
    assert hc(running, "sandbox", "exec", "tight", "--", "id", "-u").stdout == "4242\n"
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nfilesystem:\n  read_write: [/]\n")
    refused = hc(running, "sandbox", "create", "bad", "--policy", str(broken))
    assert refused.returncode == 1 and f"{broken}:3:" in refused.stderr


def test_policy_check_and_show(home: Paths, tmp_path: Path) -> None:
    ok = hc(home, "policy", "check", str(home.policy))
    assert ok.returncode == 0 and "valid policy" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprocess:\n  max_procesess: 5\n")
    refused = hc(home, "policy", "check", str(bad))
    assert refused.returncode == 1
    assert f"{bad}:3: process.max_procesess: unknown key" in refused.stderr
    assert "did you mean 'max_processes'" in refused.stderr
    shown = hc(home, "policy", "show")
    assert shown.returncode == 0 and "run_as_uid: 1000" in shown.stdout and "max_output_bytes" in shown.stdout
    home.policy.unlink()
    missing = hc(home, "policy", "show")
    assert missing.returncode == 1 and "nothing runs" in missing.stderr


def test_sandbox_commands_need_the_gateway(daemon_home: Paths) -> None:
    result = hc(daemon_home, "sandbox", "list")
    assert result.returncode == 1 and "hermitcrab up" in result.stderr


def test_bench_sandbox_prints_the_contract_keys(home: Paths) -> None:
    result = hc(home, "bench", "sandbox", "--json", "--runs", "20", timeout=120)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("create_p50_ms", "destroy_p50_ms", "exec_p50_ms", "exec_p99_ms", "bare_p50_ms", "exec_ratio"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["exec_ratio"] == pytest.approx(figures["exec_p50_ms"] / figures["bare_p50_ms"], rel=0.02)


def test_bench_egress_prints_the_contract_keys(home: Paths) -> None:
    result = hc(home, "bench", "egress", "--json", "--requests", "24", timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("direct_p50_ms", "proxied_p50_ms", "throughput_ratio", "reload_ms"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["added_p50_ms"] == pytest.approx(
        figures["proxied_p50_ms"] - figures["direct_p50_ms"], abs=0.002
    )
    assert figures["requests"] == 24  # one turn of 25, its warm-up left out


def test_audit_prints_what_a_sandbox_ran_with_its_control_characters_escaped(running: Paths) -> None:
    assert hc(running, "sandbox", "create", "esc").returncode == 0
    hc(running, "sandbox", "exec", "esc", "--", "echo", "\x1b[2K\rall fine")
    shown = hc(running, "audit", "--sandbox", "esc").stdout
    assert "\x1b" not in shown and "\r" not in shown and "echo \\x1b[2K\\x0dall fine" in shown


def test_restore_applies_the_current_policy_not_the_archives(running: Paths, tmp_path: Path) -> None:
    """Whoever made the archive chose its policy: the uid, host binds, where secrets go."""
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text("version: 1\nprocess:\n  run_as_uid: 4242\n")
    assert hc(running, "sandbox", "create", "made", "--policy", str(chosen)).returncode == 0
    archive = tmp_path / "made.tar.gz"
    assert hc(running, "sandbox", "snapshot", "made", str(archive)).returncode == 0
    restored = hc(running, "sandbox", "restore", str(archive), "mine")
    assert restored.returncode == 0, restored.stderr
    assert "not applied" in restored.stdout and "+  run_as_uid: 4242" in restored.stdout
    assert hc(running, "sandbox", "exec", "mine", "--", "id", "-u").stdout == "1000\n"
    asked = hc(running, "sandbox", "restore", str(archive), "theirs", "--archive-policy")
    assert asked.returncode == 0 and "Under the archive's own policy" in asked.stdout
    assert hc(running, "sandbox", "exec", "theirs", "--", "id", "-u").stdout == "4242\n"


def test_create_refuses_a_workspace_folder_with_someone_elses_files(running: Paths, tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "cat.jpg").write_bytes(b"meow")
    owner = mine.stat().st_uid
    refused = hc(running, "sandbox", "create", "grab", "--workspace", str(mine))
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    assert (mine / "cat.jpg").stat().st_uid == owner == mine.stat().st_uid  # nothing was chowned
    fresh = tmp_path / "fresh"
    assert hc(running, "sandbox", "create", "ok", "--workspace", str(fresh)).returncode == 0
