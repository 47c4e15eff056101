"""A long-lived command with stdin and stdout open both ways (how an MCP server over stdio
runs in the agent's sandbox): no deadline, and nothing left when the host lets it go."""

from __future__ import annotations

import asyncio
import time

from hermitcrab.sandbox.base import ExecResult, OutputChunk


async def _read_until(stream, want: bytes, seconds: float = 10) -> bytes:
    seen = b""
    async with asyncio.timeout(seconds):
        while want not in seen:
            piece = await stream.read()
            assert isinstance(piece, OutputChunk), piece
            seen += piece.data
    return seen


def test_stdin_and_stdout_stream_both_ways(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox()

    async def talk() -> tuple[bytes, bytes, ExecResult]:
        stream = await driver.stream(box, ["sh", "-c", 'while read line; do echo "got $line"; done'])
        try:
            await stream.write(b"one\n")
            first = await _read_until(stream, b"got one\n")
            await stream.write(b"two\nthree\n")
            rest = await _read_until(stream, b"got three\n")
            await stream.close_stdin()
            end = await stream.read()
            while isinstance(end, OutputChunk):
                end = await stream.read()
            return first, rest, end
        finally:
            await stream.close()

    first, rest, end = run(talk())
    assert first == b"got one\n" and rest.endswith(b"got three\n")
    assert end.exit_code == 0


def test_a_stream_outlives_the_command_timeout_and_dies_with_its_connection(make_sandbox, run) -> None:
    driver, box, _ = make_sandbox(process={"timeout_seconds": 1})

    init = driver.processes(box)  # the supervisor

    async def live() -> list[int]:
        # A child of its own in the background too: all of it must go.
        stream = await driver.stream(box, ["sh", "-c", "sleep 300 & echo ready; cat"])
        await _read_until(stream, b"ready\n")
        await asyncio.sleep(1.5)  # past timeout_seconds: an exec would have been killed
        await stream.write(b"still here\n")
        await _read_until(stream, b"still here\n")
        busy = driver.processes(box)
        await stream.close()
        return busy

    busy = run(live())
    assert len(busy) >= len(init) + 3  # sh, sleep, cat
    deadline = time.monotonic() + 10
    while driver.processes(box) != init and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.processes(box) == init
    after = run(driver.exec(box, ["echo", "ok"]))
    assert after.stdout == b"ok\n"  # the sandbox serves the next command as before
