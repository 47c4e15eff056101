"""The set-up scripts as a normal user would run them: no false alarm."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to a user"
)
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_normal_user_is_not_told_to_install_what_is_there() -> None:
    """ldconfig is in /sbin, off a normal user's PATH: the check once said libseccomp2 was
    missing on every machine, to every user but root."""
    nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
    ]
    done = subprocess.run([*nobody, "bash", str(SCRIPTS / "ensure-bwrap.sh")], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
