"""The store: an append-only log that survives reopening, on both engines; WAL and
migrations of the SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hermitcrab.errors import StoreError
from hermitcrab.store import SessionStore, open_database
from hermitcrab.store.migrations import MIGRATIONS
from hermitcrab.store.sessions import MESSAGE, REPLY, TURN_FAILED


def store_at(where: Path | str) -> SessionStore:
    if isinstance(where, str):
        from hermitcrab.store.pg import open_postgres

        return SessionStore(open_postgres(where))
    return SessionStore(open_database(where))


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "state.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_events_survive_reopening(where: Path | str) -> None:
    store = store_at(where)
    store.ensure_session("s1", "main")
    first = store.append("s1", MESSAGE, {"role": "user", "text": "hi"})
    store.append("s1", REPLY, {"text": "hello"}, reply_to=first.id)
    store.close()
    again = store_at(where)
    events = again.events("s1")
    assert [e.kind for e in events] == [MESSAGE, REPLY]
    assert events[1].reply_to == first.id and events[1].data == {"text": "hello"}
    assert [s.id for s in again.list_sessions()] == ["s1"]


def test_unanswered_messages_are_the_ones_to_resume(where: Path | str) -> None:
    store = store_at(where)
    store.ensure_session("s", "main")
    a = store.append("s", MESSAGE, {"text": "a"})
    b = store.append("s", MESSAGE, {"text": "b"})
    c = store.append("s", MESSAGE, {"text": "c"})
    store.append("s", REPLY, {"text": "ra"}, reply_to=a.id)
    store.append("s", TURN_FAILED, {"error": "x"}, reply_to=c.id)
    assert [e.id for e in store.unanswered()] == [b.id]


def test_conversation_pairs_by_reply_not_by_position(where: Path | str) -> None:
    store = store_at(where)
    store.ensure_session("s", "main")
    a = store.append("s", MESSAGE, {"text": "a"})
    b = store.append("s", MESSAGE, {"text": "b"})  # queued while a's turn ran
    store.append("s", REPLY, {"text": "ra"}, reply_to=a.id)
    store.append("s", REPLY, {"text": "rb"}, reply_to=b.id)
    c = store.append("s", MESSAGE, {"text": "c"})
    pairs = store.conversation("s", before=c.id, limit=10)
    assert [(m.data["text"], r.data["text"]) for m, r in pairs] == [("a", "ra"), ("b", "rb")]
    assert [m.data["text"] for m, _ in store.conversation("s", before=b.id, limit=10)] == ["a"]
    assert [m.data["text"] for m, _ in store.conversation("s", before=c.id, limit=1)] == ["b"]


def test_bad_session_id_is_refused(where: Path | str) -> None:
    store = store_at(where)
    with pytest.raises(StoreError, match="invalid session id"):
        store.ensure_session("../etc", "main")


def test_newer_schema_is_refused_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_database(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 999")
    raw.close()
    with pytest.raises(StoreError, match="newer than this HermitCrab knows"):
        open_database(path)


def test_garbage_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        open_database(path)


def test_an_upgrade_that_fails_changes_nothing_and_keeps_the_old_store(tmp_path: Path, monkeypatch) -> None:
    import sqlite3

    import hermitcrab.store.db as db

    path = tmp_path / "state.db"
    monkeypatch.setattr(db, "MIGRATIONS", MIGRATIONS[:6])  # a store an older HermitCrab made
    old = store_at(path)
    old.ensure_session("s1", "main")
    old.append("s1", MESSAGE, {"role": "user", "text": "keep me"})
    old.close()
    # This version's migrations, and one more that fails halfway through.
    broken = (*MIGRATIONS, "CREATE TABLE extra (x INTEGER); INSERT INTO nowhere VALUES (1)")
    monkeypatch.setattr(db, "MIGRATIONS", broken)
    with pytest.raises(StoreError) as caught:
        open_database(path)
    assert "nothing was changed" in str(caught.value) and f"{path}.v6.bak" in str(caught.value)
    raw = sqlite3.connect(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 6
    assert "job_runs" not in tables and "extra" not in tables  # not even the migrations that worked
    raw.close()
    assert (tmp_path / "state.db.v6.bak").is_file()
    monkeypatch.setattr(db, "MIGRATIONS", MIGRATIONS)  # the fixed release
    upgraded = store_at(path)
    assert [e.data["text"] for e in upgraded.events("s1")] == ["keep me"]
    upgraded.close()
    assert not (tmp_path / "state.db.v6.bak").exists()  # the new store opened cleanly: the copy goes


def test_appends_from_many_threads_share_commits_and_each_is_durable(tmp_path: Path) -> None:
    """Group commit: turns that append at once share one commit (one fsync), and each
    caller still returns only once its own event is committed, with its own id."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "state.db"
    store = store_at(path)
    store.ensure_session("s", "main")
    commits: list[str] = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda n: store.append("s", MESSAGE, {"n": n}).id, range(400)))
    store._conn.set_trace_callback(None)
    store.close()
    assert len(set(ids)) == 400
    assert len(commits) < 400  # shared
    again = store_at(path)
    assert sorted(e.data["n"] for e in again.events("s", limit=1000)) == list(range(400))


def test_a_write_that_fails_in_a_group_fails_alone(tmp_path: Path) -> None:
    import sqlite3

    from hermitcrab.store.db import GroupCommit

    store = store_at(tmp_path / "state.db")
    group = GroupCommit(store._conn, store._lock)
    with pytest.raises(sqlite3.OperationalError):
        group.run(lambda conn: conn.execute("INSERT INTO nowhere VALUES (1)"))
    store.ensure_session("s", "main")
    assert store.append("s", MESSAGE, {"text": "still fine"}).id > 0


def test_appends_awaited_from_an_event_loop_share_commits_and_need_no_thread_each(tmp_path: Path) -> None:
    """The async path: coroutines submit to the committer with no worker thread of their
    own; each gets its own committed event, and the lot shares commits."""
    import asyncio
    import threading

    path = tmp_path / "state.db"
    store = store_at(path)
    store.ensure_session("s", "main")
    commits: list[str] = []
    store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)

    async def many() -> tuple[list[int], int]:
        threads_before = threading.active_count()
        events = await asyncio.gather(*(store.append_async("s", MESSAGE, {"n": n}) for n in range(400)))
        return [e.id for e in events], threading.active_count() - threads_before

    ids, new_threads = asyncio.run(many())
    store._conn.set_trace_callback(None)
    assert len(set(ids)) == 400 and len(commits) < 400
    assert new_threads <= 1  # the committer, started with the first write

    async def bad() -> None:
        await store._group.run_async(lambda conn: conn.execute("INSERT INTO nowhere VALUES (1)"))

    with pytest.raises(sqlite3.OperationalError):  # a bad write fails alone, on the awaiting side
        asyncio.run(bad())
    first, again = asyncio.run(_inbound_twice(store))
    assert first[1] and not again[1] and again[0].id == first[0].id  # the same source id: taken once
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append("s", MESSAGE, {"n": "late"})
    reopened = store_at(path)
    assert sorted(e.data["n"] for e in reopened.events("s", limit=1000) if "n" in e.data) == list(range(400))


async def _inbound_twice(store: SessionStore) -> tuple[tuple[object, bool], tuple[object, bool]]:
    first = await store.append_inbound_async("s", {"text": "hi"}, "client-1")
    again = await store.append_inbound_async("s", {"text": "hi"}, "client-1")
    return first, again
