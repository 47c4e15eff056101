"""The sandbox's cgroups: a memory cap on all its commands together, each command in a
leaf of its own that is killed when the command ends, and a freezer that stops every
process. Each attack here got past the sandbox before the cgroups (see the hardening
issue): memfds beyond max_memory_mb, a process that outlived its command by hiding as a
zombie, and a freeze that skipped it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hermitcrab.sandbox.base import Layers
from hermitcrab.sandbox.local import cgroups, identity

from .conftest import Lab, assert_blocked, assert_escaped, describe, small_policy, wait_until

MEMFD_BOMB = """
held = []
try:
    while len(held) * 4 < 2 * ARGS['max_memory_mb']:
        fd = os.memfd_create('hc-bomb')
        os.write(fd, b'x' * (4 << 20))
        held.append(fd)
except OSError as exc:
    blocked(f'{ename(exc.errno)} after {len(held) * 4} MB')
escaped(f"{len(held) * 4} MB held in memfds, twice max_memory_mb {ARGS['max_memory_mb']}")
"""

# A command that leaves a process behind the way the review did: a child that starts its
# own session, then ends its main thread with a raw exit(2) while another thread runs on.
# Its group leader then shows as a zombie ('Z'), and anything that skips zombies skips it.
ZOMBIE_LEADER = """
import threading
pid = os.fork()
if pid == 0:
    os.setsid()
    def tick():
        n = 0
        while True:
            n += 1
            with open('/workspace/hc-ticks', 'w') as f:
                f.write(str(n))
            time.sleep(0.01)
    threading.Thread(target=tick, daemon=True).start()
    time.sleep(0.2)
    libc.syscall(60, 0)  # SYS_exit (x86-64): only this thread ends
print('started', pid, flush=True)
"""


def _memory() -> None:
    if cgroups.detect().memory is None:
        pytest.skip(f"this machine gives no memory cgroup: {cgroups.detect().why_not}")


def _tracking() -> None:
    if cgroups.detect().tracking is None:
        pytest.skip(f"this machine gives no cgroup v2 tree: {cgroups.detect().why_not}")


def test_memfds_are_held_by_the_memory_cap(lab: Lab, fresh) -> None:
    """layer: cgroups. Pages written into memfds are shmem: RLIMIT_AS never sees them, the
    memory cgroup charges them. The command is killed (or refused), the supervisor, in a
    sibling cgroup outside the cap, keeps serving."""
    _memory()
    box = fresh(policy=small_policy(process={"memory": "required"}))
    result = lab.py(box, MEMFD_BOMB, args={"max_memory_mb": 256})
    if result.killed_by != "max_memory_mb":
        assert_blocked(result, "cgroups", ("ENOMEM", "ENOSPC"))
    lab.works(box, "cgroups")


def test_memfds_control_without_cgroups(lab: Lab, fresh) -> None:
    """Control: the same bomb, cgroups off, holds twice max_memory_mb."""
    box = fresh(policy=small_policy(), layers=Layers(cgroups=False))
    assert_escaped(lab.py(box, MEMFD_BOMB, args={"max_memory_mb": 256}), "memfds past the rlimits")


def test_a_process_hiding_as_a_zombie_dies_with_its_command(lab: Lab, fresh) -> None:
    """layer: cgroups. Whatever a command starts is in the command's leaf, wherever it goes
    (another session, a zombie leader), and the leaf is killed when the command ends."""
    _tracking()
    box = fresh()
    result = lab.py(box, ZOMBIE_LEADER)
    assert result.exit_code == 0, describe(result)
    wait_until(lambda: len(lab.driver.processes(box)) == 1 or None, "only the supervisor to be left")
    ticks = Path(box.spec.workspace, "hc-ticks")
    before = ticks.read_text() if ticks.exists() else ""
    time.sleep(0.1)
    assert (ticks.read_text() if ticks.exists() else "") == before, "the hidden process still runs"


def test_zombie_leader_is_counted_and_frozen(lab: Lab, fresh) -> None:
    """layer: cgroups. With background processes allowed, the hidden process stays: it is
    counted by `processes`, and the freezer stops it (a snapshot's moment is real)."""
    _tracking()
    box = fresh(policy=small_policy(process={"background_processes": True}))
    result = lab.py(box, ZOMBIE_LEADER)
    assert result.exit_code == 0, describe(result)
    ticks = Path(box.spec.workspace, "hc-ticks")
    wait_until(lambda: ticks.exists() or None, "the hidden process to start ticking")
    assert len(lab.driver.processes(box)) >= 2, "the hidden process is not counted"
    lab.driver.freeze(box, True)
    try:
        frozen = ticks.read_text()
        time.sleep(0.2)  # it ticks every 10 ms when it runs
        assert ticks.read_text() == frozen, "a process of the sandbox ran on through the freeze"
    finally:
        lab.driver.freeze(box, False)
    wait_until(lambda: ticks.read_text() != frozen or None, "the thawed process to tick again")


def test_leftovers_die_without_touching_a_command_beside_them(lab: Lab, fresh) -> None:
    """layer: cgroups. One command's end kills its own leaf only: a command running beside
    it (another leaf) finishes untouched."""
    _tracking()
    box = fresh()

    async def both() -> tuple:
        import asyncio

        slow = asyncio.ensure_future(lab.driver.exec(box, ["sh", "-c", "sleep 0.5; echo done"]))
        await asyncio.sleep(0.1)
        quick = await lab.driver.exec(box, ["sh", "-c", "sleep 100 & echo left"])
        return quick, await slow

    quick, slow = lab.run(both())
    assert quick.stdout == b"left\n", describe(quick)
    assert slow.exit_code == 0 and slow.stdout == b"done\n", describe(slow)


def test_memory_required_refuses_where_the_machine_cannot(lab: Lab, fresh) -> None:
    """process.memory: required with no memory cgroup to be had refuses to start."""
    from hermitcrab.errors import SandboxError

    with pytest.raises(SandboxError, match=r"process\.memory: required"):
        fresh(policy=small_policy(process={"memory": "required"}), layers=Layers(cgroups=False))


def test_cgroup_tree_is_removed_with_the_sandbox(lab: Lab) -> None:
    _tracking()
    box = lab.create(name="gone")
    assert box.groups is not None and box.groups.track is not None
    folder = box.groups.track
    assert folder.is_dir()
    lab.destroy(box)
    assert not folder.exists()


def test_commands_run_as_a_host_uid_no_account_has(lab: Lab, box) -> None:
    """A root gateway's commands are a reserved host uid: no host user (nor anyone's
    subordinate range) owns their user namespaces, so no one can setns into them. Before,
    they were uid 1000, a real account on many machines (on this project's, too)."""
    result = lab.exec(box, ["sh", "-c", "sleep 0.3 & echo $! ; wait"])
    assert result.exit_code == 0, describe(result)
    for pid in lab.driver.processes(box):
        uids = Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[:3]
        assert {int(u) for u in uids} == {identity.HOST_UID}, uids
    assert identity.host_account(identity.HOST_UID) is None
    assert box.status["host_uid"] == identity.HOST_UID


def test_no_command_holds_a_cgroup_descriptor(lab: Lab, fresh) -> None:
    """layer: cgroups. The leaf descriptors the supervisor receives (opened by root: the
    kernel checks a cgroup write against the opener) never reach a command, its own or
    those of a command running beside it. They once did: received inheritable, they went
    into every command spawned while they were open."""
    _tracking()
    box = fresh()
    listing = """
import os
for fd in range(3, 1024):
    try:
        os.fstat(fd)
    except OSError:
        continue
    print('open', fd)
print('checked')
"""

    async def beside() -> bytes:
        import asyncio

        slow = asyncio.ensure_future(lab.driver.exec(box, ["sleep", "1"]))
        await asyncio.sleep(0.2)
        seen = await lab.driver.exec(box, ["python3", "-c", listing])
        await slow
        return seen.stdout

    seen = lab.run(beside()).decode()
    assert seen == "checked\n", f"a command holds descriptors it was not given: {seen!r}"


def test_a_host_uid_that_an_account_has_is_refused(lab: Lab, fresh) -> None:
    """A policy (from the API, say) that names a host account's uid for the sandbox would
    give that account its namespaces: the sandbox does not start."""
    import pwd

    from hermitcrab.errors import SandboxError

    name = pwd.getpwuid(1).pw_name
    with pytest.raises(SandboxError, match=f"belongs to the host user '{name}'"):
        fresh(policy=small_policy(process={"host_uid": 1}))
