"""The door takes one peer, one message, and only the sandbox's own listener from it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hermitcrab.egress.door import Door


def hand_over(path: Path, sock: socket.socket) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as gate:
        gate.connect(str(path))
        socket.send_fds(gate, [b"l"], [sock.fileno()])


def listening(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


async def settle() -> None:
    import asyncio

    for _ in range(5):
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["udp", "other port", "connected"])
def test_anything_but_the_listener_is_refused(tmp_path: Path, run, kind: str) -> None:
    decoy = {
        "udp": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        "other port": listening,
        "connected": lambda: socket.socketpair()[0],
    }[kind]()

    async def scenario() -> Door:
        door = Door(tmp_path / "door.sock", 3128, lambda conn: None)
        hand_over(tmp_path / "door.sock", decoy)
        await settle()
        return door

    door = run(scenario())
    assert door.listener is None and door.gate is None  # refused, and the door is shut
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
        hand_over(tmp_path / "door.sock", decoy)
    door.close()
    decoy.close()


def test_the_listener_is_taken_and_its_connections_arrive(tmp_path: Path, run) -> None:
    probe = listening()
    port = probe.getsockname()[1]
    arrived: list[socket.socket] = []

    async def scenario() -> Door:
        door = Door(tmp_path / "door.sock", port, arrived.append)
        hand_over(tmp_path / "door.sock", probe)
        probe.close()  # as the supervisor does: the proxy holds it now
        await settle()
        socket.create_connection(("127.0.0.1", port)).close()
        await settle()
        return door

    door = run(scenario())
    assert door.listener is not None and len(arrived) == 1
    assert arrived[0].getblocking() is False
    door.close()
    for conn in arrived:
        conn.close()
