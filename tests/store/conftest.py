"""Every engine-agnostic store test runs on both engines: the embedded SQLite file and a
PostgreSQL server (tests/store/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.postgres import Postgres, postgres_missing


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    missing = postgres_missing()
    if missing:
        pytest.skip(missing)
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a store lives: a SQLite file, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return request.getfixturevalue("postgres").database()
