"""`hermitcrab service install|uninstall`: run the gateway under the system's service
manager, so it starts at boot and comes back after a crash (systemd user unit on Linux,
a launchd agent on macOS)."""

from __future__ import annotations

import getpass
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

from hermitcrab.cli.output import fail
from hermitcrab.config.paths import Paths
from hermitcrab.gateway.crashes import STOPPED_EXIT

UNIT = "hermitcrab.service"
LAUNCHD_LABEL = "org.hermitcrab.gateway"
RESTART_BURST = 5  # crashes within START_LIMIT_S before systemd stops trying
START_LIMIT_S = 600


def unit_path() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "systemd" / "user" / UNIT


def unit_text(paths: Paths, memory_max_mb: int | None, stop_timeout_s: float) -> str:
    """The systemd user unit: the gateway in the foreground, its logs in the journal too."""
    memory = f"MemoryMax={memory_max_mb}M\n" if memory_max_mb else ""
    return f"""\
[Unit]
Description=HermitCrab gateway (a personal AI agent)
After=network-online.target
# A crash loop stops here, with the unit marked failed: `hermitcrab status` says so.
StartLimitIntervalSec={START_LIMIT_S}
StartLimitBurst={RESTART_BURST}

[Service]
Type=simple
ExecStart={sys.executable} -P -m hermitcrab.gateway
Environment=HERMITCRAB_HOME={paths.home}
Environment=PYTHONUNBUFFERED=1
WorkingDirectory={paths.home}
Restart=on-failure
# The gateway's own crash-loop stop (gateway.crashes): not restarted until a person looks.
RestartPreventExitStatus={STOPPED_EXIT}
# Restarts back off: 2 s, growing to a minute (systemd >= 254; older ones wait 2 s).
RestartSec=2
RestartSteps=5
RestartMaxDelaySec=60
TimeoutStopSec={int(stop_timeout_s) + 5}
KillMode=mixed
# A cgroup of its own to hand down: the gateway caps each sandbox's memory under it.
Delegate=yes
{memory}
[Install]
WantedBy=default.target
"""


def launchd_plist(paths: Paths) -> bytes:
    return plistlib.dumps(
        {
            "Label": LAUNCHD_LABEL,
            "ProgramArguments": [sys.executable, "-P", "-m", "hermitcrab.gateway"],
            "EnvironmentVariables": {"HERMITCRAB_HOME": str(paths.home)},
            "WorkingDirectory": str(paths.home),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},  # back after a crash, not after `down`
            "ThrottleInterval": 10,
            "StandardOutPath": str(paths.logs / "gateway.out"),
            "StandardErrorPath": str(paths.logs / "gateway.out"),
        }
    )


def systemctl(*args: str) -> subprocess.CompletedProcess[str] | None:
    """`systemctl --user ARGS`, or None where no user manager runs (no systemd, a container)."""
    if shutil.which("systemctl") is None:
        return None
    probe = subprocess.run(["systemctl", "--user", "is-system-running"], capture_output=True, text=True)
    if probe.returncode != 0 and probe.stdout.strip() in ("", "offline", "unknown"):
        return None
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True)


def install(launchd: bool) -> None:
    from hermitcrab.config.loader import load_config

    paths = Paths.from_env()
    config = load_config(paths.config)  # refuse a broken config now, not at boot
    if launchd or sys.platform == "darwin":
        target = Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        sys.stdout.write(launchd_plist(paths).decode())
        print(f"\n# Save this as {target}, then: launchctl load -w {target}")
        return
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        unit_text(paths, config.gateway.service_memory_max_mb, config.gateway.shutdown_timeout_seconds)
    )
    print(f"wrote {path}")
    user = getpass.getuser()
    enabled = systemctl("daemon-reload")
    if enabled is None:
        print("No systemd user manager runs here. Where one does:")
        print(f"  systemctl --user daemon-reload && systemctl --user enable --now {UNIT}")
    else:
        done = systemctl("enable", "--now", UNIT)
        if done is None or done.returncode != 0:
            fail(f"systemctl --user enable --now {UNIT} failed: {(done.stderr if done else '').strip()}")
        print(f"enabled and started {UNIT}")
    print(f"To keep it running while {user} is logged out: loginctl enable-linger {user}")
    print("`hermitcrab down` stops it until the next boot; `hermitcrab service uninstall` for good.")


def uninstall() -> None:
    path = unit_path()
    stopped = systemctl("disable", "--now", UNIT)
    if path.exists():
        path.unlink()
        print(f"removed {path}")
    else:
        print(f"no unit at {path}")
    if stopped is not None:
        systemctl("daemon-reload")
