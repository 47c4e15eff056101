"""The audit log's store side: caps, aggregation of repeats, retention."""

from __future__ import annotations

from pathlib import Path

from hermitcrab.store import AuditEntry
from hermitcrab.store.store import Store


def _denied(target: str, ts: float) -> AuditEntry:
    return AuditEntry(
        actor="sandbox:box",
        action="network",
        outcome="denied",
        sandbox="box",
        argv=[target],
        rule="default",
        detail="no rule allows it",
        ts=ts,
    )


def test_repeated_decisions_are_one_row_with_a_count(where: Path | str) -> None:
    store = Store(where)
    try:
        for i in range(500):
            store.audit.record_soon(_denied("CONNECT evil.example:443", 1000.0 + i * 0.01))
        store.audit.record_soon(_denied("CONNECT other.example:443", 1006.0))
        store.audit.record_soon(_denied("CONNECT evil.example:443", 1000.0 + 61))  # past the window
        entries = store.audit.entries()
        rows = [(e.argv[0], e.repeats, e.last_ts) for e in entries]
        assert rows == [
            ("CONNECT evil.example:443", 500, 1000.0 + 499 * 0.01),
            ("CONNECT other.example:443", 1, None),
            ("CONNECT evil.example:443", 1, None),
        ]
    finally:
        store.close()


def test_a_failed_audit_write_is_counted_not_silent(tmp_path: Path, caplog) -> None:
    """A batch that cannot be written is rolled back, logged, and counted for `status`."""
    store = Store(tmp_path / "state.db")
    try:
        with store._lock:
            store._conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        store.audit.record_soon(_denied("CONNECT evil.example:443", 1000.0))
        store.audit.flush()
        assert store.audit.lost == 1 and "disk says no" in (store.audit.last_error or "")
        assert "audit write failed; 1 entries lost" in caplog.text
    finally:
        store.close()


def test_the_async_store_runs_every_table_method_off_the_loop(where: Path | str) -> None:
    """`store.aio` is the seam async code speaks: each method of each table, awaited, run on
    a worker thread (the event loop's own thread never touches SQLite)."""
    import asyncio
    import threading

    store = Store(where)
    try:
        seen: list[int] = []
        real = store.sessions.ensure_session

        def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(threading.get_ident())
            return real(*args, **kwargs)

        store.sessions.ensure_session = watched  # type: ignore[method-assign]

        async def scenario() -> tuple[str, int]:
            session = await store.aio.sessions.ensure_session("s1", "main")
            return session.id, threading.get_ident()

        session_id, loop_thread = asyncio.run(scenario())
        assert session_id == "s1" and seen and seen[0] != loop_thread
    finally:
        store.close()


def test_the_audit_log_is_a_hash_chain_that_names_the_first_broken_entry(where: Path | str) -> None:
    store = Store(where)
    try:
        for i in range(5):
            store.audit.record(AuditEntry(actor="cli", action="exec", outcome="ok", argv=["echo", str(i)]))
            store.audit.record_soon(_denied(f"CONNECT host{i}.example:443", 1000.0 + i))
        store.audit.record_soon(
            _denied("CONNECT host4.example:443", 1004.5)
        )  # a repeat: a counter, unchained
        verdict = store.audit.verify()
        assert (verdict.ok, verdict.entries) == (True, 10), verdict
        rows = [e.id for e in store.audit.entries()]

        with store._lock:
            store._conn.execute("UPDATE audit SET detail = 'nothing to see' WHERE id = ?", (rows[3],))
        verdict = store.audit.verify()
        assert (verdict.ok, verdict.first_broken) == (False, rows[3])
        assert verdict.reason == "its content was changed after it was written"

        with store._lock:
            store._conn.execute("DELETE FROM audit WHERE id IN (?, ?)", (rows[3], rows[4]))
        verdict = store.audit.verify()
        assert (verdict.ok, verdict.first_broken) == (False, rows[5])
        assert verdict.reason == "the entry before it was removed or changed"
    finally:
        store.close()


def test_pruning_keeps_the_chain_checkable(where: Path | str) -> None:
    """Retention drops a prefix and keeps the hash of its last entry as the anchor."""
    store = Store(where)
    try:
        for i in range(6):
            store.audit.record(
                AuditEntry(actor="cli", action="exec", outcome="ok", argv=[str(i)], ts=100.0 + i)
            )
        assert store.audit.prune(103.0) == 3
        verdict = store.audit.verify()
        assert (verdict.ok, verdict.entries) == (True, 3), verdict
        store.audit.record(AuditEntry(actor="cli", action="exec", outcome="ok", argv=["after"]))
        assert store.audit.verify().ok
        first = store.audit.entries()[0].id
        with store._lock:
            store._conn.execute("DELETE FROM audit WHERE id = ?", (first,))  # not through retention
        assert store.audit.verify().first_broken == first + 1
    finally:
        store.close()
