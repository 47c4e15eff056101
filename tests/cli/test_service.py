"""`hermitcrab service install|uninstall`: the unit it writes (this machine runs no systemd,
so the files are what is checked), and the launchd plist."""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
from pathlib import Path

from hermitcrab.config.paths import Paths

# systemd cannot run here; this stands in for its `systemctl --user`, answering in the
# real command's formats and noting each call.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
case "$2" in
  is-system-running) echo running ;;
  show) printf 'ActiveState=failed\\nSubState=failed\\nResult=start-limit-hit\\nNRestarts=5\\n' ;;
esac
"""


def hc(
    home: Paths, config_home: Path, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERMITCRAB_HOME": str(home.home), "XDG_CONFIG_HOME": str(config_home)}
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "hermitcrab", *args], env=env, capture_output=True, text=True
    )


def test_install_writes_a_unit_that_restarts_backs_off_and_delegates(home: Paths, tmp_path: Path) -> None:
    home.config.write_text(
        home.config.read_text().replace("gateway:\n", "gateway:\n  service_memory_max_mb: 2048\n")
    )
    installed = hc(home, tmp_path, "service", "install")
    assert installed.returncode == 0, installed.stderr
    unit = tmp_path / "systemd" / "user" / "hermitcrab.service"
    text = unit.read_text()
    assert f"ExecStart={sys.executable} -P -m hermitcrab.gateway" in text
    assert f"Environment=HERMITCRAB_HOME={home.home}" in text
    for line in (
        "Restart=on-failure",
        "RestartSteps=5",
        "StartLimitBurst=5",
        "Delegate=yes",
        "MemoryMax=2048M",
        "RestartPreventExitStatus=78",  # the gateway's own crash-loop stop stays stopped
    ):
        assert line in text.splitlines(), line
    assert "WantedBy=default.target" in text
    assert "loginctl enable-linger" in installed.stdout
    removed = hc(home, tmp_path, "service", "uninstall")
    assert removed.returncode == 0 and not unit.exists()


def test_a_broken_config_is_refused_before_a_unit_is_written(home: Paths, tmp_path: Path) -> None:
    home.config.write_text("version: 1\ngateway:\n  prot: 1\n")
    installed = hc(home, tmp_path, "service", "install")
    assert installed.returncode == 1 and "gateway.prot" in installed.stderr
    assert not (tmp_path / "systemd").exists()


def test_launchd_plist_runs_the_gateway_and_keeps_it_alive(home: Paths, tmp_path: Path) -> None:
    printed = hc(home, tmp_path, "service", "install", "--launchd")
    assert printed.returncode == 0, printed.stderr
    plist = plistlib.loads(printed.stdout.split("\n# Save this as")[0].encode())
    assert plist["ProgramArguments"] == [sys.executable, "-P", "-m", "hermitcrab.gateway"]
    assert plist["EnvironmentVariables"] == {"HERMITCRAB_HOME": str(home.home)}
    assert plist["KeepAlive"] == {"SuccessfulExit": False}


def test_where_systemd_runs_the_unit_is_enabled_and_a_failed_one_shows_in_status(
    home: Paths, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    installed = hc(home, tmp_path, "service", "install", path=str(bin_dir))
    assert installed.returncode == 0, installed.stderr
    assert "enabled and started hermitcrab.service" in installed.stdout
    calls = (bin_dir / "calls").read_text().splitlines()
    assert "--user daemon-reload" in calls and "--user enable --now hermitcrab.service" in calls

    shown = hc(home, tmp_path, "status", "--json", path=str(bin_dir))
    assert shown.returncode == 1
    service = json.loads(shown.stdout)["service"]
    assert service == {
        "unit": "hermitcrab.service",
        "active": "failed",
        "sub": "failed",
        "result": "start-limit-hit",
        "restarts": "5",
    }
    said = hc(home, tmp_path, "status", path=str(bin_dir))
    assert "hermitcrab.service failed (start-limit-hit, 5 restarts)" in said.stdout
    assert "journalctl --user -u hermitcrab.service" in said.stdout

    removed = hc(home, tmp_path, "service", "uninstall", path=str(bin_dir))
    assert removed.returncode == 0
    assert "--user disable --now hermitcrab.service" in (bin_dir / "calls").read_text()
    without_unit = hc(home, tmp_path, "status", "--json", path=str(bin_dir))
    assert "service" not in json.loads(without_unit.stdout)
