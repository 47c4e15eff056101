"""The sandbox as most people run it: a gateway of a normal user, with no root, no
delegated cgroup and no mount rights. The suite runs as root (CI does), so each check here
forks, drops to an unprivileged uid for good, and runs a real sandbox there.

What must hold: the sandbox starts and its layers hold (binds, Landlock, seccomp, rlimits,
the timeout); what the machine cannot give this user (cgroups) is reported best effort, and
a policy that requires it refuses to start; the sandbox's host uid is the user's own."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hermitcrab.errors import SandboxError
from hermitcrab.policy.schema import Policy
from hermitcrab.sandbox.base import SandboxSpec
from hermitcrab.sandbox.local import cgroups
from hermitcrab.sandbox.local.driver import LocalDriver

USER_UID = 65534  # nobody: an account with nothing of its own


@pytest.fixture
def user_root() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another uid (run as a normal user, the whole suite is this test)")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    root = Path(tempfile.mkdtemp(prefix="hcu"))
    os.chown(root, USER_UID, USER_UID)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def as_user(scenario: Callable[[], Any]) -> dict[str, Any]:
    """Run `scenario` in a child that is USER_UID for good; return what it returns. What it
    imports late is imported here first: this interpreter lives in root's home, which the
    user cannot read (a real user's gateway runs on an interpreter of its own)."""
    import concurrent.futures.thread  # noqa: F401
    import ctypes.util  # noqa: F401 - see above
    import selectors  # noqa: F401

    from hermitcrab.sandbox.local.seccomp import filter_bpf

    filter_bpf()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is the parent's assertions
        os.close(read)
        try:
            os.setgroups([])
            os.setresgid(USER_UID, USER_UID, USER_UID)
            os.setresuid(USER_UID, USER_UID, USER_UID)
            os.environ["HOME"] = "/tmp"
            cgroups.detect.cache_clear()  # what root found is not what this user may do
            out = {"result": scenario()}
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "error" not in out, out["error"]
    return out["result"]


def _policy(**process: Any) -> Policy:
    return Policy(version=1, process={"timeout_seconds": 5, **process})


def test_a_normal_users_sandbox_holds(user_root: Path) -> None:
    secret = user_root / "secret"
    secret.write_text("host-secret\n")
    secret.chmod(0o644)  # readable to the user: only the sandbox stands in the way

    def scenario() -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            workspace = user_root / "ws"
            workspace.mkdir()
            driver = LocalDriver(user_root / "s")
            box = await driver.create(SandboxSpec("mine", _policy(), workspace))
            try:
                ident = await driver.exec(box, ["id", "-u"])
                read = await driver.exec(box, ["cat", str(secret)])
                net = await driver.exec(
                    box, ["python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 53), 2)"]
                )
                slow = await driver.exec(box, ["sh", "-c", "sleep 100 & sleep 101"], timeout=0.5)
                left = len(driver.processes(box))
                host_uid = next(
                    int(line.split()[1])
                    for line in Path(f"/proc/{box.host_pid}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
                return {
                    "id": ident.stdout.decode().strip(),
                    "read_exit": read.exit_code,
                    "read_out": read.stdout.decode(),
                    "net_exit": net.exit_code,
                    "slow": slow.killed_by,
                    "left": left,
                    "status": {k: box.status.get(k) for k in ("landlock", "memory_cap", "process_tracking")},
                    "host_uid": host_uid,
                    "status_host_uid": box.status.get("host_uid"),
                }
            finally:
                await driver.destroy(box)

        return asyncio.run(run())

    got = as_user(scenario)
    assert got["id"] == "1000"  # run_as_uid inside
    assert got["host_uid"] == got["status_host_uid"] == USER_UID  # the user's own uid outside
    assert got["read_exit"] != 0 and "host-secret" not in got["read_out"]
    assert got["net_exit"] != 0
    assert got["slow"] == "timeout_seconds" and got["left"] == 1
    assert got["status"] == {
        "landlock": "enforced",
        "memory_cap": "best_effort",
        "process_tracking": "best_effort",
    }


def test_a_normal_user_cannot_have_what_the_machine_will_not_give(user_root: Path) -> None:
    def scenario() -> list[str]:
        async def run() -> list[str]:
            workspace = user_root / "ws2"
            workspace.mkdir()
            driver = LocalDriver(user_root / "s2")
            errors = []
            capped = Policy(version=1, filesystem={"workspace_quota": "required"})
            for policy in (_policy(memory="required"), _policy(host_uid=4242), capped):
                try:
                    box = await driver.create(SandboxSpec("refused", policy, workspace))
                    await driver.destroy(box)
                    errors.append("started")
                except SandboxError as exc:
                    errors.append(str(exc))
            return errors

        return asyncio.run(run())

    memory, uid, disk = as_user(scenario)
    assert "process.memory: required" in memory and "best_effort" in memory
    assert "workspace_quota: required" in disk and "needs a root gateway" in disk
    assert "process.host_uid 4242 needs a root gateway" in uid


def _battery() -> list[Any]:
    from tests.security import test_filesystem, test_kernel, test_network, test_processes, test_resources

    lists = [
        test_filesystem.READ_HOST,
        test_filesystem.WRITE_OUTSIDE,
        test_filesystem.LINK_TRICKS,
        test_filesystem.DEVICES,
        test_kernel.SYSCALLS,
        test_network.WORLD,
        test_network.KERNEL_SOCKETS,
        test_processes.TRACING,
        test_processes.NAMESPACES,
        test_processes.SETUID,
        test_processes.TERMINALS,
        test_processes.ENVIRONMENT,
        test_resources.RAISE_LIMITS,
        test_resources.BOMBS,
    ]
    return [attack for attacks in lists for attack in attacks if not attack.marks]


def test_the_attack_battery_holds_for_a_normal_user(user_root: Path, bait) -> None:
    """The default sandbox's attacks (files, kernel, network, processes, limits), each in a
    sandbox of a normal user's gateway: every one must be blocked there too."""
    import re
    from textwrap import dedent

    from tests.security.conftest import PRELUDE, SMALL_PROCESS, small_policy, verdict

    given = {**bait.args(), "max_memory_mb": SMALL_PROCESS["max_memory_mb"], "max_file_mb": 8}
    everything = _battery()
    # An attack that needs a fixture of its own (a setuid copy, a host socket) is left to its test.
    attacks = [a for a in everything if set(re.findall(r"ARGS\[['\"](\w+)", a.code)) <= set(given)]
    assert len(everything) - len(attacks) <= 5, [a.id for a in everything if a not in attacks]
    args = json.dumps(given)

    def scenario() -> dict[str, str]:
        async def run() -> dict[str, str]:
            workspace = user_root / "battery"
            workspace.mkdir()
            driver = LocalDriver(user_root / "s3")
            box = await driver.create(SandboxSpec("battery", small_policy(), workspace))
            verdicts = {}
            try:
                for attack in attacks:
                    result = await driver.exec(box, ["python3", "-c", PRELUDE + dedent(attack.code), args])
                    verdicts[attack.id] = verdict(result) or f"no verdict: exit={result.exit_code}"
            finally:
                await driver.destroy(box)
            return verdicts

        return asyncio.run(run())

    verdicts = as_user(scenario)
    assert len(verdicts) == len(attacks) > 100
    escaped = {name: line for name, line in verdicts.items() if not line.startswith("BLOCKED")}
    assert not escaped, escaped
