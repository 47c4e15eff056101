"""What the benches that run the real daemon share: a free loopback port, a throwaway home
onboarded with their own config, and how they print what they measured."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchHome:
    """A HERMITCRAB_HOME in a temporary folder, onboarded, with the bench's config."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.env = {**os.environ, "HERMITCRAB_HOME": str(home), **env}

    def hc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "hermitcrab", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"hermitcrab {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def onboard(self, config: str) -> None:
        self.hc("onboard", "--yes")
        (self.home / "hermitcrab.yaml").write_text(config)
        # No loop-mounted image for a throwaway home: the measured quota does here.
        policy = self.home / "policy.yaml"
        policy.write_text(
            policy.read_text().replace("workspace_quota: required", "workspace_quota: best_effort")
        )

    @contextlib.contextmanager
    def store(self) -> Iterator[sqlite3.Connection]:
        """The home's state.db, read-only beside the running daemon (WAL lets both be)."""
        db = sqlite3.connect(f"file:{self.home / 'state.db'}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @property
    def token(self) -> str:
        return (self.home / "gateway.token").read_text().strip()

    @property
    def pid(self) -> int | None:
        try:
            text = (self.home / "gateway.pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None


def report(results: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print(json.dumps(results, indent=2))
        return
    width = max(len(key) for key in results)
    for key, value in results.items():
        print(f"{key:>{width}}  {value}")
