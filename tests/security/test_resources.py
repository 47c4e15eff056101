"""Resource attacks: fork bombs, memory bombs, disk fill, CPU hogs, core dumps, raising
the limits. Policy limits are small (see SMALL_PROCESS) so that every case ends fast;
whatever a bomb does, the sandbox must keep serving commands afterwards."""

from __future__ import annotations

import signal

import pytest

from .conftest import (
    FORK_BOMB,
    MB,
    SMALL_PROCESS,
    Attack,
    Lab,
    assert_blocked,
    cases,
    describe,
    small_policy,
    wait_until,
)

MAX_PROCESSES = SMALL_PROCESS["max_processes"]
MAX_MEMORY_MB = SMALL_PROCESS["max_memory_mb"]
MAX_FILE_MB = SMALL_PROCESS["max_file_size_mb"]

RAISE_LIMITS = [
    Attack(
        f"raise-{name.lower()}",
        "caps",
        f"""
        import resource
        soft, hard = resource.getrlimit(resource.{name})
        if hard == resource.RLIM_INFINITY:
            escaped('{name} has no hard limit to raise')
        try:
            resource.setrlimit(resource.{name}, (hard + 1, hard + 1))
        except (ValueError, OSError) as exc:
            blocked(f'EPERM raising {name} past {{hard}}: {{exc}}')
        escaped(f'raised {name} to {{resource.getrlimit(resource.{name})}}')
        """,
        ("EPERM",),
    )
    for name in ("RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_CPU")
]

BOMBS = [
    Attack(
        "memory-bomb",
        "rlimits",
        """
        chunks = []
        try:
            while len(chunks) < 64:
                chunks.append(bytearray(16 << 20))
        except MemoryError:
            blocked(f'ENOMEM after {len(chunks) * 16} MB')
        escaped(f'allocated {len(chunks) * 16} MB')
        """,
        ("ENOMEM",),
    ),
    Attack(
        "memory-bomb-mmap",
        "rlimits",
        """
        import mmap
        attempt('mmap 512 MB', lambda: mmap.mmap(-1, 512 << 20))
        """,
        ("ENOMEM",),
    ),
    Attack(
        "memory-bomb-threads",
        "rlimits",
        """
        import threading
        started = []
        try:
            for _ in range(200):
                t = threading.Thread(target=time.sleep, args=(5,), daemon=True)
                t.start()
                started.append(t)
        except RuntimeError as exc:
            blocked(f'EAGAIN after {len(started)} threads: {exc}')
        escaped(f'{len(started)} threads')
        """,
        ("EAGAIN",),
    ),
    Attack(
        "open-files",
        "rlimits",
        """
        fds = []
        try:
            while len(fds) < 10000:
                fds.append(os.open('/dev/null', os.O_RDONLY))
        except OSError as exc:
            blocked(f'{ename(exc.errno)} after {len(fds)} files')
        escaped(f'{len(fds)} open files')
        """,
        ("EMFILE",),
    ),
    Attack(
        "file-size-python",
        "rlimits",
        """
        with open('/workspace/hc-big-py', 'wb') as f:
            data = b'\\0' * ((ARGS['max_file_mb'] + 1) << 20)
            attempt('write past max_file_size_mb', lambda: f.write(data))
        """,
        ("EFBIG",),
    ),
    Attack(
        "sparse-file-truncate",
        "rlimits",
        """
        write('/workspace/hc-sparse', b'')
        attempt('truncate to 1 GB', lambda: os.truncate('/workspace/hc-sparse', 1 << 30))
        """,
        ("EFBIG",),
    ),
]


def fill(folder: str, files: int, mb_each: int, cap_mb: int) -> str:
    """A probe that writes `files` files of `mb_each` MB into `folder`, a MB at a time."""
    return f"""
written = 0
try:
    for i in range({files}):
        with open(f'{folder}/fill-{{i}}', 'wb') as f:
            for _ in range({mb_each}):
                f.write(b'x' * (1 << 20))
                f.flush()
                written += 1
except OSError as exc:
    blocked(f'{{ename(exc.errno)}} after {{written}} MB in {folder}')
escaped(f'{{written}} MB written to {folder}, capped at {cap_mb} MB')
"""


@cases(*RAISE_LIMITS)
def test_limits_cannot_be_raised(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*BOMBS)
def test_bombs_hit_the_limits(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack, args={"max_memory_mb": MAX_MEMORY_MB, "max_file_mb": MAX_FILE_MB})
    lab.works(box, attack.layer)


def test_disk_fill_stops_at_max_file_size(lab: Lab, box) -> None:
    """layer: rlimits. RLIMIT_FSIZE: SIGXFSZ, or EFBIG where the signal is ignored."""
    target = box.spec.workspace / "hc-big"
    result = lab.sh(box, f"head -c {(MAX_FILE_MB + 2) * MB} /dev/zero > /workspace/hc-big")
    size = target.stat().st_size
    target.unlink()
    assert size <= MAX_FILE_MB * MB, (
        f"ESCAPE: the rlimits layer should cap files at {MAX_FILE_MB} MB, wrote {size}: {describe(result)}"
    )
    assert result.exit_code != 0, f"the oversized write reported success: {describe(result)}"
    if result.signal is not None:
        assert result.signal == signal.SIGXFSZ and result.killed_by == "max_file_size_mb", describe(result)


def test_tmp_is_bounded(lab: Lab, fresh) -> None:
    """layer: tmpfs. The private /tmp is a tmpfs of filesystem.tmp_size_mb, however many
    files share it (each below max_file_size_mb)."""
    box = fresh(policy=small_policy(filesystem={"tmp_size_mb": 4}))
    result = lab.py(box, fill("/tmp", files=8, mb_each=4, cap_mb=4))
    assert_blocked(result, "tmpfs", ("ENOSPC",))
    lab.works(box, "tmpfs")


def test_cpu_hog_is_killed_at_the_timeout(lab: Lab, box) -> None:
    """layer: timeout. A busy loop with CPU time to spare is killed at the command's timeout."""
    result = lab.exec(box, ["sh", "-c", "while :; do :; done"], timeout=1)
    assert result.killed_by == "timeout_seconds" and result.signal == signal.SIGKILL, (
        f"the timeout layer should have killed the hog: {describe(result)}"
    )
    lab.works(box, "timeout")


def test_sleeping_command_and_its_children_are_killed_at_the_timeout(lab: Lab, box) -> None:
    """layer: timeout. A command that uses no CPU at all (and its background child) still
    ends at the timeout: the whole process group is killed."""
    result = lab.exec(box, ["sh", "-c", "sleep 1000 & sleep 1001"], timeout=1)
    assert result.killed_by == "timeout_seconds", (
        f"the timeout layer should have killed it: {describe(result)}"
    )

    def leftovers() -> list[str]:
        found = []
        for pid in lab.driver.processes(box):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if cmd.startswith(b"sleep\0100"):
                found.append(cmd.decode(errors="replace"))
        return found

    wait_until(lambda: not leftovers() or None, "the timed-out command's children to die")


def test_cpu_hog_is_killed_at_cpu_seconds(lab: Lab, fresh) -> None:
    """layer: rlimits. RLIMIT_CPU ends a busy loop long before a generous timeout."""
    box = fresh(policy=small_policy(process={"cpu_seconds": 1, "timeout_seconds": 120}))
    result = lab.exec(box, ["sh", "-c", "while :; do :; done"])
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL) and result.killed_by != "timeout_seconds", (
        f"the rlimits layer (RLIMIT_CPU) should have ended the hog before the timeout: {describe(result)}"
    )
    assert result.killed_by == "cpu_seconds", (
        f"the hog was ended (signal {result.signal}), but the result does not name cpu_seconds as the "
        f"limit that ended it: {describe(result)}"
    )
    lab.works(box, "rlimits")


def test_no_core_dumps(lab: Lab, box) -> None:
    """layer: rlimits. RLIMIT_CORE is 0 and cannot be raised; a crash leaves no core file."""
    raised = lab.sh(box, "ulimit -c unlimited && echo raised")
    assert b"raised" not in raised.stdout, (
        f"the rlimits layer should pin RLIMIT_CORE at 0: {describe(raised)}"
    )
    limit = lab.sh(box, "ulimit -c")
    assert limit.stdout.strip() == b"0", describe(limit)
    crash = lab.exec(box, ["python3", "-c", "import os; os.chdir('/workspace'); os.abort()"])
    assert crash.signal == signal.SIGABRT, describe(crash)
    segv = lab.exec(box, ["sh", "-c", "cd /workspace && kill -SEGV $$"])
    assert segv.signal == signal.SIGSEGV, describe(segv)
    cores = [p.name for p in box.spec.workspace.iterdir() if p.name.startswith("core")]
    assert not cores, f"the rlimits layer should have kept core dumps off: {cores}"


def test_fork_bomb_stops_at_max_processes(lab: Lab, fresh) -> None:
    """layer: rlimits. RLIMIT_NPROC caps the processes; the bomb ends, the sandbox serves."""
    box = fresh()
    result = lab.py(
        box,
        FORK_BOMB,
        args={"max_processes": MAX_PROCESSES},
    )
    assert_blocked(result, "rlimits", ("EAGAIN",))
    lab.works(box, "rlimits")


def test_exponential_fork_bomb_ends_and_sandbox_survives(lab: Lab, fresh) -> None:
    """layers: rlimits + timeout. Every process forks forever; NPROC caps them, the timeout
    kills the group, and nothing of the bomb remains."""
    box = fresh(policy=small_policy(process={"cpu_seconds": 60}))  # the timeout, not CPU time, ends it
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = lab.exec(box, ["python3", "-c", bomb], timeout=2)
    assert result.killed_by == "timeout_seconds", describe(result)
    lab.works(box, "rlimits")
    wait_until(
        lambda: lab.driver.processes(box) == [box.host_pid] or None,
        "every process of the bomb to be gone (only the supervisor left)",
    )


def test_detached_fork_bomb_does_not_disable_the_sandbox(lab: Lab, fresh) -> None:
    """layer: supervisor. A bomb whose processes each leave the command's process group
    (setsid) outlives the group kill at the end of the command. It must still not keep the
    sandbox from serving the next command."""
    box = fresh()
    bomb = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            os.setsid()\n"
        "    except OSError:\n"
        "        time.sleep(1)\n"
    )
    lab.exec(box, ["python3", "-c", bomb], timeout=1)
    lab.works(box, "supervisor")


def test_workspace_size_is_capped(lab: Lab, fresh) -> None:
    """layer: workspace quota (best effort). Files each under max_file_size_mb add up past
    filesystem.workspace_max_mb: the command that grows the workspace past it is killed,
    and a clean-up that shrinks it runs."""
    box = fresh(policy=small_policy(filesystem={"workspace_max_mb": 8}))
    result = lab.py(
        box,
        """
        for i in range(60):
            with open(f'/workspace/fill-{i}', 'wb') as f:
                f.write(os.urandom(1 << 20))
            time.sleep(0.05)
        escaped('60 MB written to a workspace capped at 8 MB')
        """,
    )
    assert result.killed_by == "workspace_max_mb", describe(result)
    written = len(list(box.spec.workspace.glob("fill-*")))
    assert written < 60, f"{written} MB were written"
    cleanup = lab.sh(box, "rm -f /workspace/fill-*")
    assert cleanup.exit_code == 0 and cleanup.killed_by is None, describe(cleanup)
    lab.works(box, "workspace quota")


def test_workspace_quota_required_is_a_filesystem_of_that_size(lab: Lab, fresh, tmp_path) -> None:
    """layer: workspace quota (required). The workspace is a filesystem of workspace_max_mb:
    writes past it fail with ENOSPC inside, and the host's disk holds no more than that.
    What the folder held moves in; the files live on across the sandbox's restarts."""
    from hermitcrab.sandbox.local import quota

    why_not = quota.cap_unavailable()
    if why_not:
        pytest.skip(why_not)
    workspace = tmp_path / "capped"
    workspace.mkdir()
    (workspace / "kept.txt").write_text("from before\n")
    policy = small_policy(filesystem={"workspace_quota": "required", "workspace_max_mb": 16})
    box = fresh(policy=policy, workspace=workspace)
    try:
        result = lab.py(box, fill("/workspace", files=6, mb_each=6, cap_mb=16))
        assert_blocked(result, "workspace quota", ("ENOSPC",))
        image = quota.image_path(lab.driver.images, workspace)
        assert image.stat().st_blocks * 512 <= 16 * MB  # the host's disk holds no more than the cap
        assert (workspace / "kept.txt").read_text() == "from before\n"  # moved in, seen from the host
        assert lab.sh(box, "cat /workspace/kept.txt").stdout == b"from before\n"
        lab.sh(box, "rm -f /workspace/fill-*")
        lab.works(box, "workspace quota")
    finally:
        lab.destroy(box)  # stopped, not forgotten: its files stay in view
    assert quota.is_mounted(workspace) and (workspace / "kept.txt").exists()
    again = fresh(policy=policy, workspace=workspace)
    assert lab.sh(again, "cat /workspace/kept.txt").stdout == b"from before\n"
    lab.live.remove(again)
    lab.run(lab.driver.destroy(again, forget=True))  # for good: the filesystem is let go
    assert not quota.is_mounted(workspace) and list(workspace.iterdir()) == []  # in the image
    (workspace / "later.txt").write_text("written while it was down\n")
    third = fresh(policy=policy, workspace=workspace)  # the image again; what came meanwhile set aside
    assert lab.sh(third, "cat /workspace/kept.txt; ls /workspace").stdout == b"from before\nkept.txt\n"
    aside = list(workspace.parent.glob("capped.outside-*"))
    assert len(aside) == 1 and (aside[0] / "later.txt").read_text() == "written while it was down\n"
    lab.live.remove(third)
    lab.run(lab.driver.destroy(third, forget=True))
