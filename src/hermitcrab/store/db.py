"""The one place a SQLite connection is made (swap the driver here, e.g. for sqlite-vec)."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hermitcrab.errors import StoreError
from hermitcrab.store.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 5000
log = logging.getLogger("hermitcrab.store")
T = TypeVar("T")


class Writer:
    """The thread that writes for async code: never on the event loop (a commit waits for
    the disk), always in the order submitted. A write that fails is logged and counted."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self.lost = 0
        self.last_error: str | None = None

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Write in the background; the caller goes on at once."""
        try:
            self._pool.submit(fn, *args).add_done_callback(self._check)
        except RuntimeError:  # closed: we are stopping, so write here and now
            fn(*args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on the writer's thread, after everything submitted before, and wait for it."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def drain(self) -> None:
        """Wait for every write submitted so far: readers call it, so that they see them."""
        if threading.current_thread().name.startswith("store-writer"):
            return  # on the writer itself, everything before is written already
        try:
            self._pool.submit(lambda: None).result()
        except RuntimeError:
            pass  # closed: nothing is left to write

    def _check(self, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            self.lost += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("a store write failed: %s", self.last_error)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class WritesSoon:
    """For a table whose writes callers on the event loop do not wait for: `_soon` sends
    a write to the store's writer thread (or runs it here where there is none), `_drain`
    lets a read see every write sent before it."""

    _writer: Writer | None

    def _soon(self, write: Callable[..., Any], *args: Any) -> None:
        if self._writer is None:
            write(*args)
        else:
            self._writer.soon(write, *args)

    def _drain(self) -> None:
        if self._writer is not None:
            self._writer.drain()


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the store; WAL so readers never block the writer."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (got {mode}); is it on a network filesystem?")
        # FULL: a message we acknowledged survives power loss, not only a crash of ours.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path)
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path}: cannot open the store: {exc}. fix: move the file aside and restart "
            "(a new, empty store is created), or restore it from a backup"
        ) from None


class GroupCommit:
    """Writes committed together by one committer thread: each caller gets its result once
    its own write is durable, as with a commit of its own, but writes that arrive while a
    commit is on its way share the next one (one fsync for the lot).

    Async code submits without a thread of its own (`run_async`): the committer resolves a
    whole batch's futures with one call into each waiting event loop, so a turn's append
    costs no worker thread and no wake-up per caller. Threads wait with `run`."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock  # the connection's: other tables use it outside batches
        self._wake = threading.Condition()
        self._pending: _Batch = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def run(self, write: Callable[[sqlite3.Connection], T]) -> T:
        done: Future[T] = Future()
        self._submit(write, done)
        return done.result()

    def run_async(self, write: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._submit(write, (loop, done))
        return done

    def close(self) -> None:
        """Commit what is pending, then stop the committer."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _submit(self, write: Callable[[sqlite3.Connection], Any], waiter: _Waiter) -> None:
        with self._wake:
            if self._closed:
                raise StoreError("the store is closed")
            self._pending.append((write, waiter))
            if self._thread is None:
                self._thread = threading.Thread(target=self._commit_loop, name="store-commit", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _commit_loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                batch, self._pending = self._pending, []
                if not batch and self._closed:
                    return
            _settle(batch, self._commit(batch))

    def _commit(
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], _Waiter]]
    ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for write, _ in batch:
                        # A write that fails undoes only its own statement (SQLite keeps the
                        # transaction); it gets its error, the others still commit.
                        try:
                            outcomes.append((True, write(self._conn)))
                        except Exception as exc:
                            outcomes.append((False, exc))
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
        except BaseException as exc:
            return [(False, exc)] * len(batch)
        return outcomes


# Who waits for a write: a thread (a concurrent Future) or a coroutine (its loop, its future).
_Waiter = Future | tuple[asyncio.AbstractEventLoop, asyncio.Future]
_Batch = list[tuple[Callable[[sqlite3.Connection], Any], _Waiter]]


def _settle(batch: _Batch, outcomes: list[tuple[bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_, waiter), (ok, value) in zip(batch, outcomes, strict=True):
        if isinstance(waiter, Future):
            if ok:
                waiter.set_result(value)
            else:
                waiter.set_exception(value)
        else:
            by_loop.setdefault(waiter[0], []).append((waiter[1], ok, value))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, settled)
        except RuntimeError:
            pass  # that loop is closed: nobody waits any more


def _resolve(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():
            continue  # its caller was cancelled; the write stands
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store to this version's schema in one transaction: an upgrade that fails
    anywhere leaves the store as it was. A store that had data is first copied aside
    (`state.db.vN.bak`); the copy goes once the migrated store has opened and checks out,
    and stays, named in the error, when it does not."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(MIGRATIONS):
        raise StoreError(
            f"{path}: store schema version {current} is newer than this HermitCrab knows "
            f"({len(MIGRATIONS)}). fix: upgrade hermitcrab"
        )
    if current == len(MIGRATIONS):
        return
    backup = path.with_name(f"{path.name}.v{current}.bak") if current > 0 else None
    if backup is not None:
        copy = sqlite3.connect(backup)
        try:
            conn.backup(copy)
        finally:
            copy.close()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for version in range(current, len(MIGRATIONS)):
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException as exc:
        conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            kept = f"; the store before it is also kept as {backup}" if backup else ""
            raise StoreError(
                f"{path}: upgrading the store from schema {current} to {len(MIGRATIONS)} failed ({exc}); "
                f"nothing was changed{kept}. fix: report this, and run the previous HermitCrab meanwhile"
            ) from None
        raise
    verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise StoreError(f"{path}: the upgraded store fails its check ({verdict}); the old one is {backup}")
    if backup is not None:
        backup.unlink(missing_ok=True)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT on its own; splitting keeps each migration one transaction.
    return [s.strip() for s in script.split(";") if s.strip()]
