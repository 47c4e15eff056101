"""Requests the policy marked `ask`, held until a person decides (or the hold times out,
which denies). A decision `--always` becomes a rule in the policy file."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from hermitcrab.errors import HermitCrabError


class ApprovalError(HermitCrabError):
    """No such pending approval, or it was already decided."""


@dataclass
class Approval:
    id: str
    sandbox: str
    host: str
    port: int
    rule: str
    created_at: float
    expires_at: float
    state: str = "pending"  # pending | approved | denied | expired
    always: bool = False
    decided_by: str | None = None
    _future: asyncio.Future[bool] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class Approvals:
    def __init__(
        self,
        on_change: Callable[[Approval], None] | None = None,
        on_always: Callable[[Approval], None] | None = None,
    ) -> None:
        self._items: dict[str, Approval] = {}
        self._ids = itertools.count(1)
        self._on_change = on_change or (lambda approval: None)
        self._on_always = on_always or (lambda approval: None)

    async def ask(self, sandbox: str, host: str, port: int, rule: str, timeout: float) -> Approval:
        """Hold until decided; returns the approval in its final state."""
        now = time.time()
        approval = Approval(
            id=f"a{next(self._ids)}-{int(now) % 100000}",
            sandbox=sandbox,
            host=host,
            port=port,
            rule=rule,
            created_at=now,
            expires_at=now + timeout,
        )
        approval._future = asyncio.get_running_loop().create_future()
        self._items[approval.id] = approval
        self._on_change(approval)
        try:
            await asyncio.wait_for(asyncio.shield(approval._future), timeout)
        except TimeoutError:
            approval.state = "expired"
            self._on_change(approval)
        return approval

    def pending(self) -> list[Approval]:
        return [a for a in self._items.values() if a.state == "pending"]

    def all(self) -> list[Approval]:
        return list(self._items.values())

    def decide(self, approval_id: str, allow: bool, always: bool = False, by: str = "api") -> Approval:
        approval = self._items.get(approval_id)
        if approval is None:
            raise ApprovalError(
                f"no approval '{approval_id}'. fix: `hermitcrab approvals` lists the pending ones"
            )
        if approval.state != "pending":
            raise ApprovalError(f"approval '{approval_id}' is already {approval.state}")
        approval.state = "approved" if allow else "denied"
        approval.always = always and allow
        approval.decided_by = by
        if approval.always:
            self._on_always(approval)
        if approval._future is not None and not approval._future.done():
            approval._future.set_result(allow)
        self._on_change(approval)
        return approval
