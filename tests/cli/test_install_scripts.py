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


def test_llama_cpps_libraries_are_kept_once(tmp_path: Path) -> None:
    """llama-cpp-python's build leaves its libraries in site-packages/lib as well, and each
    as three identical files: the installer keeps one of each, the others become links."""
    site = tmp_path / "site"
    lib = site / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    (site / "lib").mkdir()
    record = site / "llama_cpp_python-0.3.dist-info" / "RECORD"
    record.parent.mkdir()
    record.write_text("lib/libllama.so,sha256=x,8\n")
    for folder in (lib, site / "lib"):
        for name in ("libllama.so", "libllama.so.0", "libllama.so.0.5.0"):
            (folder / name).write_bytes(b"\x7fELF llama")
    (lib / "libggml.so.0.25.3").write_bytes(b"\x7fELF ggml")
    (lib / "libggml.so").write_bytes(b"\x7fELF other")  # not the same bytes: left alone
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho {site}\n")
    python.chmod(0o755)
    script = (SCRIPTS / "install.sh").read_text()
    function = script[
        script.index("slim_llama() {") : script.index("\n}\n", script.index("slim_llama() {")) + 3
    ]
    done = subprocess.run(
        ["bash", "-c", f"set -eu\nVENV={venv}\n{function}\nslim_llama"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not (site / "lib").exists()
    assert os.readlink(lib / "libllama.so") == os.readlink(lib / "libllama.so.0") == "libllama.so.0.5.0"
    assert (lib / "libllama.so.0.5.0").read_bytes() == b"\x7fELF llama"
    assert not (lib / "libggml.so").is_symlink()
