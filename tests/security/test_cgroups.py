"""The sandbox's cgroups: a memory cap on all its commands together, each command in a
leaf of its own that is killed when the command ends, and a freezer that stops every
process. Each attack here got past the sandbox before the cgroups (see the hardening
issue): memfds beyond max_memory_mb, a process that outlived its command by hiding as a
zombie, and a freeze that skipped it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hermitcrab.sandbox.base import Layers
from hermitcrab.sandbox.local import cgroups, identity

from .conftest import Lab, assert_blocked, assert_escaped, describe, small_policy, wait_until

NOBODY = 65534

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


def _delegated_controller() -> tuple[Path, str]:
    """The v2 root and a domain controller it can hand down, or skip."""
    unified, _ = cgroups._mounts()
    if os.geteuid() != 0 or unified is None:
        pytest.skip("needs root and a cgroup v2 hierarchy, to delegate a cgroup as systemd does")
    offered = (unified / "cgroup.controllers").read_text().split()
    # Domain controllers: v2 lets a cgroup that hands one down hold no process itself.
    for controller in ("memory", "hugetlb", "io"):
        if controller in offered:
            return unified, controller
    pytest.skip(f"the cgroup v2 root offers no domain controller (only {offered})")


@pytest.fixture
def v2_child() -> Iterator[tuple[Callable[[str], Path], str]]:
    """Makes child cgroups of the v2 root that can be handed a domain controller (enabled
    at the root for the test if it was not), and removes them and that afterwards."""
    unified, controller = _delegated_controller()
    root_control = unified / "cgroup.subtree_control"
    enabled_here = controller not in root_control.read_text().split()
    if enabled_here:
        root_control.write_text(f"+{controller}")
    made: list[Path] = []

    def make(name: str) -> Path:
        folder = unified / f"hc-test-{name}-{os.getpid()}"
        folder.mkdir()
        made.append(folder)
        return folder

    yield make, controller
    for folder in made:
        with contextlib.suppress(OSError):
            (folder / cgroups.GATEWAY_LEAF).rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()
    if enabled_here:
        with contextlib.suppress(OSError):
            root_control.write_text(f"-{controller}")


def test_a_gateway_in_a_delegated_cgroup_steps_into_a_leaf_to_cap_its_sandboxes(v2_child) -> None:
    """A normal user's gateway under systemd (Delegate=yes) sits in its service's cgroup;
    v2 refuses to hand a controller down from a cgroup with a process in it, so the
    gateway moves itself into a leaf first (before, the memory cap was lost there)."""
    make, controller = v2_child
    service = make("delegated")
    # What systemd's Delegate=yes gives a user's service: the folder and these files.
    for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(service / name, NOBODY, NOBODY)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "gateway": placed in the service's cgroup, then a normal user
        try:
            (service / "cgroup.procs").write_text("0")
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            refused = not cgroups._enable(service, controller)  # the constraint is real
            handed = cgroups._enable(service, controller, make_room=True)
            where = Path("/proc/self/cgroup").read_text().splitlines()[-1]
            os.write(write, f"{refused} {handed} {where}".encode())
        finally:
            os._exit(0)
    os.close(write)
    report = os.read(read, 4096).decode().split()
    os.waitpid(pid, 0)
    os.close(read)
    assert report[:2] == ["True", "True"], report
    assert report[2].endswith(f"/{service.name}/{cgroups.GATEWAY_LEAF}")
    assert controller in (service / "cgroup.subtree_control").read_text().split()


def test_a_gateway_does_not_move_what_is_not_its_own(v2_child) -> None:
    """Another process in the same cgroup: the gateway does not step aside for it (its
    move would not help, and the other is not ours to move)."""
    make, controller = v2_child
    shared = make("shared")
    other = subprocess.Popen(["sleep", "30"])
    try:
        (shared / "cgroup.procs").write_text(str(other.pid))
        assert not cgroups.step_into_leaf(shared)
        assert not cgroups._enable(shared, controller, make_room=True)
        assert (shared / "cgroup.procs").read_text().split() == [str(other.pid)]
    finally:
        other.kill()
        other.wait()


def test_a_sandbox_whose_gateway_died_is_swept_and_a_live_one_is_not() -> None:
    """A gateway killed between starting bubblewrap and bubblewrap arming --die-with-parent
    leaves an orphaned tree (the crash test found two in 400 kills): the next start kills
    what is in it. A tree whose processes still have their gateway is left alone."""
    _tracking()
    support = cgroups.detect()
    assert support.tracking is not None
    orphan_tree = support.tracking / f"hc-test-orphan-{os.getpid()}"
    live_tree = support.tracking / f"hc-test-live-{os.getpid()}"
    orphan_tree.mkdir()
    live_tree.mkdir()
    live = subprocess.Popen(["sleep", "30"])  # its parent, this test, is alive
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:  # joins the tree, starts a sleeper, and dies: the sleeper is an orphan
        try:
            (orphan_tree / "cgroup.procs").write_text("0")
            sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
            os.write(write, str(sleeper.pid).encode())
        finally:
            os._exit(0)
    os.close(write)
    orphan = int(os.read(read, 64))
    os.close(read)
    os.waitpid(middle, 0)
    try:
        (live_tree / "cgroup.procs").write_text(str(live.pid))
        assert cgroups.orphaned(cgroups._procs(orphan_tree))
        assert not cgroups.orphaned(cgroups._procs(live_tree))
        cgroups.sweep_stale(support)
        wait_until(lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan), "the orphan to die")
        assert live.poll() is None  # the live one untouched
    finally:
        live.kill()
        live.wait()
        for tree in (orphan_tree, live_tree):
            with contextlib.suppress(OSError):
                (tree / "cgroup.kill").write_text("1")
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                tree.rmdir()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
