"""The runtime: fail-closed policy, audit of every exec, recreation after a restart."""

from __future__ import annotations

import os
import signal

import pytest

from hermitcrab.errors import PolicyError, SandboxError, SandboxNotFound
from hermitcrab.policy import policy_version
from tests.runtime.conftest import DEFAULT_POLICY


def test_every_exec_is_audited(runtime, run) -> None:
    run(runtime.create("a", actor="cli"))
    run(runtime.exec("a", ["sh", "-c", "echo hello"], actor="agent:main", cwd="/tmp"))
    run(runtime.exec("a", ["sleep", "5"], actor="cli", timeout=0.2))
    entries = runtime.audit.entries(sandbox="a")
    create, ok, killed = entries
    assert (create.action, create.outcome, create.actor) == ("sandbox.create", "ok", "cli")
    assert create.policy_version == policy_version(DEFAULT_POLICY)
    assert (ok.action, ok.outcome, ok.actor, ok.argv, ok.cwd) == (
        "exec", "ok", "agent:main", ["sh", "-c", "echo hello"], "/tmp",
    )  # fmt: skip
    assert ok.exit_code == 0 and ok.bytes_out == 6 and ok.duration_ms > 0
    assert ok.policy_version == create.policy_version
    assert (killed.outcome, killed.killed_by, killed.exit_code) == ("killed", "timeout_seconds", 137)


def test_no_policy_means_nothing_runs(env, runtime, run) -> None:
    env.policy_file.unlink()
    with pytest.raises(PolicyError, match="no policy, so nothing may run"):
        run(runtime.create("a"))
    assert runtime.list() == []


def test_broken_policy_is_refused_and_audited(env, runtime, run) -> None:
    env.policy_file.write_text("version: 1\nprocess:\n  run_as_uid: 0\n")
    with pytest.raises(PolicyError, match=r"policy\.yaml:3: process\.run_as_uid"):
        run(runtime.create("a"))
    denied = runtime.audit.entries()[-1]
    assert (denied.action, denied.outcome) == ("sandbox.create", "denied")
    assert "run_as_uid" in denied.detail


def test_sandboxes_come_back_after_a_restart(env, run) -> None:
    first = env.runtime()
    run(first.create("keep", agent="coder"))
    run(first.exec("keep", ["sh", "-c", "echo persisted > note.txt"]))
    run(first.stop())  # the gateway going down: processes gone, records kept
    assert first.list() == []
    second = env.runtime()
    assert run(second.restore_all()) == ["keep"]
    assert second.info("keep")["agent"] == "coder"  # still works for the same agent
    result = run(second.exec("keep", ["cat", "note.txt"]))
    assert result.stdout == b"persisted\n"
    assert [e.action for e in second.audit.entries(sandbox="keep")][-2:] == ["sandbox.recreate", "exec"]
    run(second.stop())


def test_a_dead_supervisor_is_replaced_on_the_next_exec(runtime, run) -> None:
    run(runtime.create("a"))
    run(runtime.exec("a", ["sh", "-c", "echo kept > f"]))
    old = runtime.get("a").box
    os.kill(old.host_pid, signal.SIGKILL)
    old.proc.wait()
    result = run(runtime.exec("a", ["cat", "f"]))
    assert result.stdout == b"kept\n" and runtime.get("a").box is not old
    assert runtime.get("a").agent is None  # nothing about it changed but its processes


def test_names_and_duplicates(runtime, run) -> None:
    run(runtime.create("a"))
    with pytest.raises(SandboxError, match="already exists"):
        run(runtime.create("a"))
    with pytest.raises(SandboxNotFound):
        run(runtime.exec("nope", ["true"]))
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        run(runtime.create("../x"))


def test_destroy_forgets(env, runtime, run) -> None:
    run(runtime.create("gone"))
    run(runtime.destroy("gone"))
    assert env.store.sandboxes.get("gone") is None
    with pytest.raises(SandboxNotFound):
        run(runtime.destroy("gone"))


def test_a_slow_store_does_not_stall_the_event_loop(env, runtime, run) -> None:
    """A commit waits for the disk. With the store held (as by a slow fsync), execs and their
    audit entries, a policy record and an approval's record go on: nothing of the event
    loop waits for the store. Before, each exec's audit entry was committed on the loop."""
    import threading

    from hermitcrab.approvals import Approvals

    run(runtime.create("slow", actor="cli"))
    inbox = Approvals(records=env.store.approvals)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with env.store._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:

        async def while_held() -> bytes:
            result = await runtime.exec("slow", ["echo", "hi"], actor="cli")
            approval = inbox.open("tool", "slow", {"tool": "exec"}, 60)
            inbox.decide(approval.id, allow=True, by="test")
            return result.stdout

        assert run(while_held()) == b"hi\n" and env.store._lock.locked()  # done while the store was held
    finally:
        release.set()
        holder.join()
    assert [e.action for e in runtime.audit.entries(sandbox="slow")] == ["sandbox.create", "exec"]
    assert [r["state"] for r in env.store.approvals.recent()] == ["approved"]


def test_a_line_logged_during_an_exec_names_the_sandbox(runtime, run, tmp_path, restore_root_logging) -> None:
    import json
    import logging

    from hermitcrab.gateway.logs import setup_logging

    path = tmp_path / "gateway.log"
    setup_logging(path, also_stderr=False)
    run(runtime.create("a", actor="cli"))

    def note(chunk) -> None:
        logging.getLogger("hermitcrab.tools").info("output came", extra={"bytes": len(chunk.data)})

    run(runtime.exec("a", ["echo", "hi"], on_output=note))
    logging.getLogger("hermitcrab.gateway").info("after the exec")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    during = next(line for line in lines if line["msg"] == "output came")
    after = next(line for line in lines if line["msg"] == "after the exec")
    assert during["sandbox"] == "a" and "sandbox" not in after
