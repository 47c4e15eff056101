"""The approval inbox: persisted, decided once, and never approved by a restart."""

from __future__ import annotations

import asyncio

import pytest

from hermitcrab.approvals import ApprovalError, Approvals
from hermitcrab.approvals.inbox import RESTARTED
from hermitcrab.store import Store


def test_a_restart_closes_what_was_pending_and_approves_nothing(tmp_path) -> None:
    store = Store(tmp_path / "state.db")

    async def leave_pending() -> str:
        inbox = Approvals(records=store.approvals)
        approval = inbox.open(
            "tool", "agent-main", {"tool": "exec", "summary": "exec: rm -rf x"}, 60, session_id="s"
        )
        return approval.id

    approval_id = asyncio.run(leave_pending())
    store.close()

    store = Store(tmp_path / "state.db")  # the gateway starts again
    inbox = Approvals(records=store.approvals)
    (closed,) = inbox.closed_at_start
    assert (closed.id, closed.state, closed.reason) == (approval_id, "expired", RESTARTED)
    assert inbox.pending() == []
    with pytest.raises(ApprovalError, match="already expired"):
        inbox.decide(approval_id, allow=True)
    (row,) = store.approvals.recent()
    assert row["state"] == "expired" and row["subject"]["summary"] == "exec: rm -rf x"
    store.close()


def test_no_person_present_denies_at_once_and_a_hold_times_out(tmp_path) -> None:
    store = Store(tmp_path / "state.db")
    inbox = Approvals(records=store.approvals)

    async def both() -> tuple[str, str, str | None]:
        absent = await inbox.hold("tool", None, {"tool": "exec"}, 60, present=False)
        late = await inbox.hold("network", "box", {"host": "h", "port": 1, "rule": "r"}, 0.05)
        return absent.state, late.state, late.reason

    absent, late, reason = asyncio.run(both())
    assert (absent, late) == ("denied", "expired") and reason and "no one decided" in reason
    assert [r["state"] for r in store.approvals.recent()] == ["denied", "expired"]
    store.close()


def test_a_wait_that_is_cancelled_closes_the_approval(tmp_path) -> None:
    store = Store(tmp_path / "state.db")
    inbox = Approvals(records=store.approvals)

    async def cancelled() -> str:
        approval = inbox.open("tool", None, {"tool": "exec"}, 60)
        waiting = asyncio.ensure_future(inbox.wait(approval))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return approval.id

    approval_id = asyncio.run(cancelled())
    assert inbox.pending() == []
    with pytest.raises(ApprovalError, match="already expired"):
        inbox.decide(approval_id, allow=True)
    store.close()


def test_a_sandbox_cannot_flood_the_inbox_and_decided_ones_are_let_go(tmp_path) -> None:
    store = Store(tmp_path / "state.db")
    inbox = Approvals(records=store.approvals, max_pending=3, keep_decided=2)

    async def flood() -> list[str]:
        asked = [
            inbox.open("network", "noisy", {"host": f"h{i}", "port": 80, "rule": "r"}, 60) for i in range(5)
        ]
        inbox.open("network", "quiet", {"host": "q", "port": 80, "rule": "r"}, 60)  # another sandbox: its own
        return [a.state for a in asked]

    states = asyncio.run(flood())
    assert states == ["pending", "pending", "pending", "denied", "denied"]
    assert len(inbox.pending()) == 4
    assert len([a for a in inbox.all() if a.state != "pending"]) == 2  # only the newest decided stay
    assert len(store.approvals.recent()) == 6  # the store keeps every one
    store.close()
