"""The proxy's end of a sandbox's door: sockets handed over, not bytes relayed.

A sandbox has no network of its own. Its supervisor makes the listening socket on
127.0.0.1:3128 inside, and hands it (SCM_RIGHTS, over a Unix SOCK_SEQPACKET socket) to this
side, which accepts the sandbox's connections itself: the proxy reads each sandbox-side TCP
socket directly and, once a tunnel is decided, splices it straight to the upstream. No
relay hop, no process in between. A connected socket can be handed over the same way (as
`knock` does, for tools on the host).

What arrives here comes from inside a sandbox, so it is checked: anything but a stream
socket is closed unread, and a door takes only a few listening sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("hermitcrab.egress")

Arrived = Callable[[socket.socket], None]
MAX_FDS = 8  # per message; the kernel closes any beyond what fits
STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
MAX_LISTENERS = 2  # the supervisor sends one


class Door:
    """A listening SEQPACKET socket; each peer (normally the sandbox's supervisor) sends
    one byte with one connected socket per message."""

    def __init__(self, path: Path, arrived: Arrived) -> None:
        self.path = path
        self.arrived = arrived  # called on the event loop with each connection, non-blocking
        self.loop = asyncio.get_running_loop()
        self.peers: set[socket.socket] = set()
        self.listeners: set[socket.socket] = set()
        path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.setblocking(False)
        self.listener.bind(str(path))
        self.listener.listen(16)
        path.chmod(0o666)  # the sandbox's uid connects; the folder around it is ours alone
        self.loop.add_reader(self.listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            peer, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("egress door accept failed: %s", exc)
            return
        peer.setblocking(False)
        self.peers.add(peer)
        self.loop.add_reader(peer.fileno(), self._receive, peer)

    def _receive(self, peer: socket.socket) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(peer, 16, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:
                self._drop(peer)
                return
            for fd in fds:
                self._adopt(fd)

    def _adopt(self, fd: int) -> None:
        try:
            conn = socket.socket(fileno=fd)  # family and type are read from the fd itself
        except OSError:
            os.close(fd)  # not a socket
            return
        if conn.type != socket.SOCK_STREAM or conn.family not in STREAM_FAMILIES:
            conn.close()
            return
        conn.setblocking(False)
        if not conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            self.arrived(conn)
        elif len(self.listeners) < MAX_LISTENERS:
            self.listeners.add(conn)
            self.loop.add_reader(conn.fileno(), self._accept_from, conn)
        else:
            conn.close()

    def _accept_from(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the connection waits in the backlog
                log.warning("egress door accept failed: %s", exc)
                return
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.arrived(conn)

    def _drop(self, peer: socket.socket) -> None:
        self.loop.remove_reader(peer.fileno())
        self.peers.discard(peer)
        peer.close()

    def close(self) -> None:
        self.loop.remove_reader(self.listener.fileno())
        self.listener.close()
        for peer in list(self.peers):
            self._drop(peer)
        for listener in self.listeners:
            self.loop.remove_reader(listener.fileno())
            listener.close()
        self.listeners.clear()
        self.path.unlink(missing_ok=True)


def knock(path: Path) -> socket.socket:
    """A connection through the door from this process (as the supervisor makes them):
    the caller speaks to the proxy on the returned socket. For tools and tests on the host."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as gate:
        gate.connect(str(path))
        socket.send_fds(gate, [b"c"], [theirs.fileno()])
    return ours


async def streams(
    conn: socket.socket, initial: bytes, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over a handed-over connection, *initial* (bytes already read from
    it) first. Made as a server's are: start_tls needs the protocol marked server-side."""
    loop = asyncio.get_running_loop()
    made: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    reader.feed_data(initial)
    protocol = asyncio.StreamReaderProtocol(reader, lambda r, w: made.append((r, w)), loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, conn)
    return made[0]
