"""The supervisor's start-up decisions, on a kernel without Landlock (simulated: this
machine has Landlock, so the kernel probe is replaced; everything else is real)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from hermitcrab.sandbox.local import supervisor


def start(mode: str, monkeypatch: pytest.MonkeyPatch, abi: int) -> dict:
    monkeypatch.setattr(supervisor, "landlock_abi", lambda: abi)
    monkeypatch.setattr(supervisor, "apply_landlock", lambda abi, rules, ports=(): [])
    monkeypatch.setattr(supervisor.Supervisor, "_apply_rlimits", lambda self: None)
    monkeypatch.setattr(supervisor.signal, "signal", lambda *args: None)  # keep pytest's SIGINT
    monkeypatch.setattr(supervisor, "_libc", type("L", (), {"prctl": staticmethod(lambda *a: 0)})())
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    config = {"listen_fd": listener.detach(), "status_fd": write_end, "landlock": {"mode": mode, "rules": []}}
    sup = supervisor.Supervisor(config)
    try:
        sup.start()
        exited = None
    except SystemExit as exc:
        exited = exc.code
    status = json.loads(os.read(read_end, 65536))
    os.close(read_end)
    sup.listener.close()
    status["exited"] = exited
    return status


def test_required_landlock_missing_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    status = start("required", monkeypatch, abi=0)
    assert status["ok"] is False and status["exited"] == 1
    assert "no Landlock" in status["error"] and "best_effort" in status["error"]


def test_best_effort_runs_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    status = start("best_effort", monkeypatch, abi=0)
    assert status["ok"] is True and status["landlock"] == "unavailable" and status["exited"] is None


def test_landlock_present_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    status = start("required", monkeypatch, abi=7)
    assert status["ok"] is True and status["landlock"] == "enforced" and status["landlock_abi"] == 7
