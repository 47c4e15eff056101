"""A crash loop backs off, then stops with a clear word in the log and in `status`; a
person's `hermitcrab up` starts it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.gateway.crashes import LIMIT, STOPPED_EXIT, WINDOW_S, CrashLedger, CrashLoop, backoff_s
from tests.cli.conftest import hc


def test_the_wait_grows_with_each_recent_end_and_the_limit_stops(tmp_path: Path) -> None:
    assert [backoff_s(n) for n in range(0, 9)] == [0, 0, 2, 4, 8, 16, 32, 60, 60]
    ledger = CrashLedger(tmp_path / "crashes.json")
    now = 1_000_000.0
    ledger.record("long ago", now - WINDOW_S - 1)  # outside the window: it counts no more
    for n in range(1, LIMIT):
        ledger.record(f"end {n}", now)
        assert ledger.check(now) == backoff_s(n)
    ledger.record("the last straw", now)
    with pytest.raises(CrashLoop, match=r"5 times in the last 10 minutes \(last: the last straw\)"):
        ledger.check(now)
    summary = ledger.summary(now)
    assert summary is not None
    assert summary["recent"] == LIMIT and summary["stopped"]["why"] == "the last straw"
    assert ledger.check(now + WINDOW_S) == 0  # ten quiet minutes later it may go again


def test_a_damaged_ledger_reads_as_empty(tmp_path: Path) -> None:
    ledger = CrashLedger(tmp_path / "crashes.json")
    ledger.path.write_text('{"ends": [{"at": "soon"}, 7], "stopped": []')
    assert ledger.read() == {"ends": [], "stopped": None}
    ledger.path.write_text('{"ends": [{"at": "soon"}, 7], "stopped": []}')
    assert ledger.read() == {"ends": [], "stopped": None} and ledger.check() == 0


def service_start(home: Paths) -> subprocess.CompletedProcess[str]:
    """The gateway as the service manager starts it."""
    env = {**os.environ, "HERMITCRAB_HOME": str(home.home)}
    return subprocess.run(
        [sys.executable, "-P", "-m", "hermitcrab.gateway", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_kill_9_is_counted_and_the_fifth_unclean_end_stops_the_service(daemon_home: Paths) -> None:
    started = hc(daemon_home, "up")
    assert started.returncode == 0, started.stderr
    pid = int(daemon_home.pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    ledger = CrashLedger(daemon_home.crashes)
    now = time.time()
    for n in range(LIMIT - 1):  # four earlier ends in the window, as a loop leaves them
        ledger.record(f"earlier end {n}", now - 60 + n)
    assert len(ledger.recent()) == LIMIT - 1

    # The service manager restarts it: the kill -9 is the fifth end, and it stops.
    ran = service_start(daemon_home)
    assert ran.returncode == STOPPED_EXIT, ran.stderr
    assert f"the run with pid {pid} ended without shutting down" in ran.stderr
    assert "does not start again on its own" in ran.stderr
    log = daemon_home.gateway_log.read_text()
    assert "crash loop:" in log
    shown = hc(daemon_home, "status", "--json")
    crashes = json.loads(shown.stdout)["crashes"]
    assert crashes["stopped"]["count"] == LIMIT and str(pid) in crashes["stopped"]["why"]
    said = hc(daemon_home, "status")
    assert said.returncode == 1 and "CRASH LOOP" in said.stdout and "`hermitcrab up`" in said.stdout

    # A person looks, and starts it: it serves, and the ledger is clean again.
    again = hc(daemon_home, "up")
    assert again.returncode == 0, again.stderr
    assert "crashes" not in json.loads(hc(daemon_home, "status", "--json").stdout)


def test_a_second_recent_end_waits_before_serving(daemon_home: Paths) -> None:
    ledger = CrashLedger(daemon_home.crashes)
    ledger.record("start failed: an earlier one")
    daemon_home.pidfile.write_text("4242\n")  # what a run killed with -9 leaves
    daemon = subprocess.Popen(
        [sys.executable, "-P", "-m", "hermitcrab.gateway", "--quiet"],
        env={**os.environ, "HERMITCRAB_HOME": str(daemon_home.home)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while "gateway starting" not in _log(daemon_home) and time.monotonic() < deadline:
            time.sleep(0.05)
        log = _log(daemon_home)
        assert "2 unclean ends in 10 minutes: waiting 2 s before starting" in log
        assert log.index("waiting 2 s") < log.index("gateway starting")
        summary = ledger.summary()
        assert summary is not None and summary["recent"] == 2 and "pid 4242" in summary["last"]["why"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0


def _log(home: Paths) -> str:
    try:
        return home.gateway_log.read_text()
    except FileNotFoundError:
        return ""
