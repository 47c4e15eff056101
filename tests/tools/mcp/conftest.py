"""The MCP tests' peers: Node >= 22, the MCP conformance suite and real MCP servers, from
npm (tests/tools/mcp/node, installed by scripts/mcp-test-peers.sh, which `make test` runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

NODE_BIN = Path(__file__).parent / "node" / "node_modules" / ".bin"


@pytest.fixture(scope="session")
def node_bin() -> Path:
    if not (NODE_BIN / "conformance").exists() or not (NODE_BIN / "node").exists():
        pytest.skip(
            "the MCP tests' peers are not installed: run scripts/mcp-test-peers.sh (`make test` does)"
        )
    return NODE_BIN


def node_env(node_bin: Path, **extra: str) -> dict[str, str]:
    """PATH leads with Node 22, which the packages' `#!/usr/bin/env node` lines then find."""
    return {**os.environ, "PATH": f"{node_bin}:{os.environ['PATH']}", **extra}


def listening(port: int, process: subprocess.Popen, what: str, seconds: float = 30.0) -> None:
    """Wait until `process` listens on `port` (loopback); fail if it exits or never does."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


@pytest.fixture
def everything_url(node_bin: Path) -> Iterator[str]:
    """The MCP project's `server-everything` over streamable HTTP, on a free loopback port."""
    port = free_port()
    server = subprocess.Popen(
        [str(node_bin / "mcp-server-everything"), "streamableHttp"],
        env=node_env(node_bin, PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening(port, server, "server-everything")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        server.wait(10)
