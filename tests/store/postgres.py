"""A PostgreSQL server for the tests, from Debian's binaries in a temporary folder (no system
service): initdb and pg_ctl run as the unprivileged `postgres` user (initdb refuses root),
listening on loopback at a free port; each test gets a database of its own."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/nonexistent"))
USER = "postgres"


def postgres_missing() -> str | None:
    if not (BIN / "initdb").exists():
        return "PostgreSQL's server is not installed (Debian's postgresql; .ci/run installs it)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is missing: initdb must run as an unprivileged user"
    return None


def _as_user(*argv: str) -> list[str]:
    return ["runuser", "-u", USER, "--", *argv] if os.geteuid() == 0 else list(argv)


@dataclass
class Postgres:
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hc-pg-")))
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.root, USER)
        data = self.root / "data"
        subprocess.run(
            _as_user(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "hermitcrab", "--no-sync",
                     "-E", "UTF8"),
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off"
        start = [
            str(BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        ]
        subprocess.run(_as_user(*start), check=True, capture_output=True)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://hermitcrab@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            _as_user(str(BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
