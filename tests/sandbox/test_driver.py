"""The local driver's behaviour: exec, streaming, caps, timeouts, reaping, destroy."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hermitcrab.errors import SandboxError
from hermitcrab.policy import Policy
from hermitcrab.sandbox.base import OutputChunk, SandboxSpec
from hermitcrab.sandbox.local.driver import LocalDriver


def test_exec_returns_output_and_exit_code(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    result = run(driver.exec(box, ["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert result.bytes_out == 8 and not result.truncated and result.killed_by is None


def test_runs_as_the_policy_uid_with_a_clean_environment(make_sandbox, run, monkeypatch) -> None:
    monkeypatch.setenv("HOST_ONLY_SECRET", "s3cr3t")
    driver, box, _ = make_sandbox(process={"run_as_uid": 1234})
    result = run(driver.exec(box, ["sh", "-c", "id -u; echo $HOME; env"]))
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "1234" and lines[1] == "/tmp"  # not the workspace: what is found in HOME runs
    assert "s3cr3t" not in result.stdout.decode() and "HOST_ONLY_SECRET" not in result.stdout.decode()


def test_workspace_is_shared_with_the_host(make_sandbox, run) -> None:
    driver, box, workspace = make_sandbox()
    (workspace / "in.txt").write_text("from host")
    result = run(driver.exec(box, ["sh", "-c", "cat in.txt; echo from sandbox > out.txt"]))
    assert result.stdout == b"from host"
    assert (workspace / "out.txt").read_text() == "from sandbox\n"


def test_stdin_is_passed_through(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    data = os.urandom(200_000)
    result = run(driver.exec(box, ["sha256sum"], stdin=data, max_output=100_000))
    import hashlib

    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_output_streams_while_the_command_runs(make_sandbox, run) -> None:
    driver, box, workspace = make_sandbox()
    chunks: list[OutputChunk] = []

    async def scenario() -> None:
        script = "echo first; while [ ! -e go ]; do sleep 0.01; done; echo second"
        task = asyncio.ensure_future(driver.exec(box, ["sh", "-c", script], on_output=chunks.append))
        while not chunks:  # the command is blocked until `go` exists: this is the live stream
            await asyncio.sleep(0.01)
        assert [c.data for c in chunks] == [b"first\n"] and not task.done()
        (workspace / "go").touch()
        result = await task
        assert result.stdout == b"first\nsecond\n"

    run(scenario())
    assert [c.stream for c in chunks] == ["stdout", "stdout"]


def test_output_past_the_cap_goes_to_a_file(make_sandbox, run) -> None:
    driver, box, workspace = make_sandbox()  # max_output_bytes 4096
    result = run(driver.exec(box, ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' 'x'"]))
    assert result.truncated and len(result.stdout) == 4096 and result.bytes_out == 20000
    assert result.output_file and result.output_file.startswith("/workspace/.hermitcrab/output/")
    spilled = workspace / result.output_file.removeprefix("/workspace/")
    assert spilled.read_bytes() == b"x" * (20000 - 4096)


def test_timeout_kills_the_whole_group(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    result = run(driver.exec(box, ["sh", "-c", "sleep 100 & sleep 100"], timeout=0.3))
    assert result.killed_by == "timeout_seconds" and result.signal == 9
    assert len(driver.processes(box)) == 1  # only the supervisor is left


def test_background_children_do_not_outlive_their_command(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    result = run(driver.exec(box, ["sh", "-c", "sleep 100 & echo started"]))
    assert result.stdout == b"started\n"
    assert len(driver.processes(box)) == 1


def test_zombies_are_reaped(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    # setsid'd grandchildren escape the group, finish, and are orphaned to the supervisor.
    for _ in range(5):
        run(driver.exec(box, ["sh", "-c", "setsid sh -c 'sleep 0.05' & exit 0"]))
    run(driver.exec(box, ["sleep", "0.3"]))
    # Every process of the sandbox's pid namespace, zombies included (processes() skips them).
    ns = os.readlink(f"/proc/{box.host_pid}/ns/pid")
    states = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                with open(f"/proc/{entry}/stat") as stat:
                    states.append(stat.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue
    assert states and "Z" not in states and len(states) == 1


def test_many_execs_at_once(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()

    async def burst() -> list[bytes]:
        results = await asyncio.gather(*(driver.exec(box, ["echo", str(i)]) for i in range(16)))
        return [r.stdout for r in results]

    assert run(burst()) == [f"{i}\n".encode() for i in range(16)]


def test_missing_command_and_bad_cwd(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    missing = run(driver.exec(box, ["no-such-command"]))
    assert missing.exit_code == 127 and b"no-such-command" in missing.stderr
    bad_cwd = run(driver.exec(box, ["pwd"], cwd="/nope"))
    assert bad_cwd.exit_code == 127 and b"pwd" in bad_cwd.stderr
    good_cwd = run(driver.exec(box, ["pwd"], cwd="/tmp"))
    assert good_cwd.stdout == b"/tmp\n"


def test_escaped_processes_are_swept_when_their_command_ends(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    escape = "setsid sh -c 'echo $$ > /tmp/pid; exec sleep 1000' >/dev/null 2>&1 </dev/null &"
    run(driver.exec(box, ["sh", "-c", f"{escape} while [ ! -s /tmp/pid ]; do sleep 0.01; done"]))
    assert len(driver.processes(box)) == 1  # the setsid'd sleep did not outlive its command


def test_destroy_leaves_nothing_behind(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    escape = "setsid sh -c 'echo $$ > /tmp/pid; exec sleep 1000' >/dev/null 2>&1 </dev/null &"

    async def scenario() -> list[int]:
        # A command still running, with a child that left its session: both must die.
        task = asyncio.ensure_future(driver.exec(box, ["sh", "-c", f"{escape} sleep 1000"]))
        while len(inside := driver.processes(box)) < 4:  # supervisor, sh, sleep, escaped sleep
            await asyncio.sleep(0.01)
        await driver.destroy(box)
        with pytest.raises(SandboxError, match="went away"):
            await task
        return inside

    inside = run(scenario())
    assert not [pid for pid in inside if os.path.exists(f"/proc/{pid}")]
    assert not box.socket_path.exists()
    with pytest.raises(SandboxError, match="not running"):
        run(driver.exec(box, ["true"]))


def test_supervisor_survives_kill_from_inside(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()
    result = run(driver.exec(box, ["sh", "-c", "kill -9 1; echo $?"]))
    assert result.exit_code == 0
    assert box.alive and run(driver.exec(box, ["true"])).exit_code == 0


def test_create_refuses_bad_input(run, tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path / "s")
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        run(driver.create(SandboxSpec("Bad Name", Policy(version=1), tmp_path)))
    with pytest.raises(SandboxError, match="is not a folder"):
        run(driver.create(SandboxSpec("x", Policy(version=1), tmp_path / "missing")))
    no_usr = Policy(version=1, filesystem={"read_only": ["/etc/ssl"]})
    with pytest.raises(SandboxError, match="must include the folder of /usr/bin/python3"):
        run(driver.create(SandboxSpec("x", no_usr, tmp_path)))


def test_a_long_state_path_still_gets_a_socket(run, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    driver = LocalDriver(deep / "state")
    box = run(driver.create(SandboxSpec("long", Policy(version=1), deep)))
    try:
        assert len(str(box.socket_path)) <= 100 and str(box.socket_path).startswith("/tmp/hermitcrab-")
        assert run(driver.exec(box, ["echo", "ok"])).stdout == b"ok\n"
    finally:
        run(driver.destroy(box))


def test_one_connection_serves_command_after_command(make_sandbox, run) -> None:
    """The host keeps its connection to the supervisor for the next command; a command
    cut off mid-way drops its connection, and the next command still runs."""
    driver, box, _ = make_sandbox()
    first = run(driver.exec(box, ["echo", "one"]))
    channel = box.idle[-1]
    second = run(driver.exec(box, ["echo", "two"]))
    assert (first.stdout, second.stdout) == (b"one\n", b"two\n")
    assert box.idle == [channel]  # the same connection, again

    async def cut_off() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(driver.exec(box, ["sleep", "5"]), 0.2)

    run(cut_off())
    assert channel not in box.idle
    assert run(driver.exec(box, ["echo", "three"])).stdout == b"three\n"
    assert asyncio.run(driver.exec(box, ["echo", "other loop"])).stdout == b"other loop\n"


def test_a_folder_the_policy_binds_from_under_the_hosts_tmp_is_seen_on_the_private_tmp(
    make_sandbox, run, tmp_path
) -> None:
    # A checkout or a test's folder under the host's /tmp: the sandbox's own /tmp must not hide it.
    shared = tmp_path / "tools"
    shared.mkdir()
    (shared / "hello.txt").write_text("from the host\n")
    read_only = ["/usr", "/bin", "/lib", "/lib64", str(shared)]
    driver, box, _ = make_sandbox(filesystem={"read_only": read_only})
    result = run(driver.exec(box, ["cat", str(shared / "hello.txt")]))
    assert result.stdout == b"from the host\n", result
    denied = run(driver.exec(box, ["sh", "-c", f"echo x > {shared}/new"]))
    assert denied.exit_code != 0 and not (shared / "new").exists()  # read-only, as the policy says
    private = run(driver.exec(box, ["sh", "-c", "echo y > /tmp/own && cat /tmp/own"]))
    assert private.stdout == b"y\n"  # the sandbox's /tmp is still its own
