"""An embedded store copied whole to PostgreSQL (`hermitcrab store migrate --to URL`): every
table, row for row with its ids (so references and the audit chain hold), in one
transaction, into a database that holds none of the store's rows yet; then the counts
are compared table by table and the ids the database counts go on from the largest."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from hermitcrab.errors import StoreError
from hermitcrab.store.pg import COUNTED, open_postgres
from hermitcrab.store.snapshot import store_tables

BATCH = 500


@dataclass(frozen=True)
class Copied:
    counts: dict[str, int]  # table: rows, the same on both sides


def copy_to_postgres(store: Path, url: str) -> Copied:
    if not store.exists():
        raise StoreError(f"{store} does not exist: nothing to copy")
    source = sqlite3.connect(store)
    target = open_postgres(url)  # the schema, at this version
    try:
        version = source.execute("PRAGMA user_version").fetchone()[0]
        from hermitcrab.store.migrations import MIGRATIONS

        if version != len(MIGRATIONS):
            raise StoreError(
                f"{store} is at schema {version}, this HermitCrab at {len(MIGRATIONS)}. fix: start the "
                "gateway once on it (it migrates), stop it, then copy"
            )
        tables = sorted(store_tables(source))
        busy = [t for t in tables if target.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
        if busy:
            raise StoreError(
                f"the PostgreSQL database already holds rows of {', '.join(busy)}. fix: copy into an empty "
                "database (createdb a new one)"
            )
        target.execute("BEGIN")
        try:
            for table in _ordered(tables):
                names = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
                if table == "memory_fts":
                    names = ["text", "heading", "agent", "path", "line"]
                insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
                order = " ORDER BY id" if table in COUNTED else ""  # a reply after what it answers
                rows = source.execute(f"SELECT {', '.join(names)} FROM {table}{order}")
                while batch := rows.fetchmany(BATCH):
                    target.executemany(insert, batch)
                if table in COUNTED:  # ids the database counts go on after the largest copied
                    target.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                    )
            counts = {}
            for table in tables:
                here = source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                there = target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if here != there:
                    raise StoreError(f"{table}: {here} rows here, {there} copied; nothing was kept")
                counts[table] = here
            target.execute("COMMIT")
        except BaseException:
            target.execute("ROLLBACK")
            raise
        return Copied(counts)
    finally:
        target.close()
        source.close()


def _ordered(tables: list[str]) -> list[str]:
    """Referenced tables first (events refer to sessions)."""
    first = [t for t in ("sessions", "jobs") if t in tables]
    return first + [t for t in tables if t not in first]
