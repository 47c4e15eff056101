"""Decisions held for a person: network requests and tool calls, in one inbox.

Each is persisted as it is asked and as it is decided, so a restart neither loses one nor
approves one: what a previous run left pending is closed as expired, with the reason,
when the inbox starts. A hold times out into a denial; with no person present (a script,
a pipe) it is denied at once. `always` asks the gateway to change the policy.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hermitcrab.errors import HermitCrabError

if TYPE_CHECKING:
    from hermitcrab.store.approvals import ApprovalRecords

Kind = Literal["network", "tool"]
RESTARTED = "the gateway restarted while this waited, so nothing ran; it is asked again if still needed"


class ApprovalError(HermitCrabError):
    """No such pending approval, or it was already decided."""


@dataclass
class Approval:
    id: str
    kind: Kind
    sandbox: str | None
    # network: host, port, rule. tool: tool, arguments, summary, risk, rule, taint, why.
    subject: dict[str, Any]
    created_at: float
    expires_at: float
    session_id: str | None = None
    state: str = "pending"  # pending | approved | denied | expired
    always: bool = False
    decided_by: str | None = None
    reason: str | None = None  # why it ended so, when no person decided
    _future: asyncio.Future[bool] | None = field(default=None, repr=False)

    def __getattr__(self, name: str) -> Any:
        # approval.host, approval.tool...: the subject's fields read like the approval's own.
        subject = self.__dict__.get("subject", {})
        if name in subject:
            return subject[name]
        raise AttributeError(name)

    @property
    def summary(self) -> str:
        if self.kind == "network":
            return f"{self.subject['host']}:{self.subject['port']}"
        return str(self.subject.get("summary") or self.subject.get("tool"))

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "sandbox": self.sandbox,
            "session_id": self.session_id,
            "subject": self.subject,
            "state": self.state,
            "always": self.always,
            "decided_by": self.decided_by,
            "reason": self.reason,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }

    def to_json(self) -> dict[str, Any]:
        record = self.record()
        subject = record.pop("subject")
        return {**subject, **record, "summary": self.summary}


class Approvals:
    def __init__(
        self,
        on_change: Callable[[Approval], None] | None = None,
        on_always: Callable[[Approval], None] | None = None,
        records: ApprovalRecords | None = None,
        always_adds: Callable[[Approval], str] | None = None,
        max_pending: int = 32,
        keep_decided: int = 500,
    ) -> None:
        # A sandbox can ask faster than a person reads: past `max_pending` of its own, a new
        # question is denied at once. Decided ones are kept (in memory) up to `keep_decided`;
        # the store keeps them all.
        self.max_pending = max_pending
        self.keep_decided = keep_decided
        self._items: dict[str, Approval] = {}
        self._ids = itertools.count(1)
        self._on_change = on_change or (lambda approval: None)
        self._on_always = on_always or (lambda approval: None)
        # What "always" would add to the policy, said beside the question (a person decides
        # knowing the rule, not only the request).
        self._always_adds = always_adds
        self._records = records
        self.closed_at_start: list[Approval] = []
        if records is not None:
            for item in records.close_pending(RESTARTED):
                approval = Approval(**{k: v for k, v in item.items() if k != "decided_at"})
                self.closed_at_start.append(approval)
                self._items[approval.id] = approval

    async def ask(self, sandbox: str, host: str, port: int, rule: str, timeout: float) -> Approval:
        """Hold a network request until decided; returns the approval in its final state."""
        return await self.hold("network", sandbox, {"host": host, "port": port, "rule": rule}, timeout)

    async def hold(self, *args: Any, present: bool = True, **kwargs: Any) -> Approval:
        """`open` then `wait`: held until decided, denied at once with no person present."""
        return await self.wait(self.open(*args, **kwargs), present)

    def open(
        self,
        kind: Kind,
        sandbox: str | None,
        subject: dict[str, Any],
        timeout: float,
        *,
        session_id: str | None = None,
    ) -> Approval:
        """Record a pending approval (persisted, announced); `wait` then holds for the answer."""
        now = time.time()
        approval = Approval(
            id=f"a{next(self._ids)}-{int(now * 1000) % 10**8}",
            kind=kind,
            sandbox=sandbox,
            subject=subject,
            created_at=now,
            expires_at=now + timeout,
            session_id=session_id,
        )
        approval._future = asyncio.get_running_loop().create_future()
        if self._always_adds is not None:
            approval.subject = {**subject, "always_adds": self._always_adds(approval)}
        waiting = sum(1 for a in self._items.values() if a.state == "pending" and a.sandbox == sandbox)
        self._items[approval.id] = approval
        if waiting >= self.max_pending:
            self._end(approval, "denied", f"{waiting} requests of this sandbox already wait for a person")
            return approval
        self._save(approval)
        self._on_change(approval)
        return approval

    async def wait(self, approval: Approval, present: bool = True) -> Approval:
        """Until a person decides, the hold times out (denied), or, with nobody `present`
        to ask, at once (denied)."""
        if approval.state != "pending":
            return approval
        if not present:
            self._end(approval, "denied", "no person is present to approve it (not a terminal)")
            return approval
        assert approval._future is not None
        try:
            await asyncio.wait_for(asyncio.shield(approval._future), approval.expires_at - time.time())
        except TimeoutError:
            if approval.state == "pending":
                self._end(
                    approval,
                    "expired",
                    f"no one decided within {approval.expires_at - approval.created_at:g} s",
                )
        except asyncio.CancelledError:
            # The turn that asked is gone (its watchdog, a shutdown): a later "approve" of a
            # call that will never run must not look like it let something through.
            if approval.state == "pending":
                self._end(approval, "expired", "the turn that asked stopped waiting")
            raise
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
        approval.always = always and allow
        approval.decided_by = by
        if approval.always:
            self._on_always(approval)  # may raise (a policy that would not load): nothing decided then
        self._end(approval, "approved" if allow else "denied", None)
        if approval._future is not None and not approval._future.done():
            approval._future.set_result(allow)
        return approval

    def _end(self, approval: Approval, state: str, reason: str | None) -> None:
        approval.state = state
        approval.reason = reason
        self._save(approval)
        self._on_change(approval)
        decided = [key for key, a in self._items.items() if a.state != "pending"]
        for key in decided[: max(len(decided) - self.keep_decided, 0)]:  # oldest first
            del self._items[key]

    def _save(self, approval: Approval) -> None:
        if self._records is not None:
            self._records.put_soon(approval.record())  # never a commit on the event loop
