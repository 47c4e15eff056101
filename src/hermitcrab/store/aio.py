"""The store as async code speaks to it: every table's methods, awaited.

SQLite blocks (a commit waits for the disk), so each call runs on a worker thread and the
event loop never waits on the database. This is the seam another engine fills: a
PostgreSQL store would offer the same tables with the same method names as coroutines
(on a connection pool), and nothing that awaits `store.aio` changes. Writes nobody waits
for go to the store's writer thread instead (`*_soon` methods, store/db.py).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from hermitcrab.store.store import Store

T = TypeVar("T")


class Awaited(Generic[T]):
    """One table: `await table.method(...)` runs `method` off the event loop."""

    def __init__(self, table: T) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        native = getattr(self._table, f"{name}_async", None)
        if native is not None:  # the table awaits this itself, with no thread of its own
            return native  # type: ignore[no-any-return]
        method = getattr(self._table, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(functools.partial(method, *args, **kwargs))

        call.__name__ = name
        return call


class AsyncStore:
    def __init__(self, store: Store) -> None:
        self.sessions = Awaited(store.sessions)
        self.sandboxes = Awaited(store.sandboxes)
        self.audit = Awaited(store.audit)
        self.usage = Awaited(store.usage)
        self.jobs = Awaited(store.jobs)
        self.file_marks = Awaited(store.file_marks)
        self.approvals = Awaited(store.approvals)
