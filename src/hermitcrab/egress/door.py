"""The proxy's end of a sandbox's door: its listening socket handed over, no byte relayed.

A sandbox has no network of its own. As it starts, before any command runs, its supervisor
makes the listening socket on 127.0.0.1:3128 inside and hands it (SCM_RIGHTS, over a Unix
SOCK_SEQPACKET socket bound into the sandbox) to this side. The door then closes: it takes
one peer, one message, one listener, and nothing after. From then on the proxy accepts the
sandbox's connections itself and reads each sandbox-side socket directly; once a tunnel is
decided it is spliced straight to the upstream. No relay hop, no process in between.

Why one listener and nothing else: a descriptor passed over SCM_RIGHTS shares its open file
description (O_NONBLOCK included) with the sender, so a socket a sandbox process handed
over could be turned blocking under the event loop's feet. The supervisor's listener is
made by pid 1 before any command exists and closed there once sent; the connections the
proxy accepts from it are new descriptions of the proxy's own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("hermitcrab.egress")

Arrived = Callable[[socket.socket], None]
RETRY_ACCEPT_S = 0.1  # after running out of descriptors
ACCEPTS_PER_TURN = 64  # then the loop serves others; the rest wait for the next turn
MAX_FDS = 4  # in the one message; the kernel closes any beyond what fits, we close the rest


class Door:
    def __init__(self, path: Path, port: int, arrived: Arrived) -> None:
        self.path = path
        self.port = port
        self.arrived = arrived  # called on the event loop with each connection, non-blocking
        self.loop = asyncio.get_running_loop()
        self.peer: socket.socket | None = None
        self.listener: socket.socket | None = None  # the sandbox's 127.0.0.1:PORT, once handed over
        path.unlink(missing_ok=True)
        self.gate: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.gate.setblocking(False)
        self.gate.bind(str(path))
        self.gate.listen(1)
        path.chmod(0o666)  # the sandbox's uid connects; the folder around it is ours alone
        self.loop.add_reader(self.gate.fileno(), self._accept_peer)

    def _close_gate(self) -> None:
        if self.gate is not None:
            self.loop.remove_reader(self.gate.fileno())
            self.gate.close()
            self.gate = None
            self.path.unlink(missing_ok=True)

    def _accept_peer(self) -> None:
        assert self.gate is not None
        try:
            peer, _ = self.gate.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("egress door: accept failed: %s", exc)
            return
        self._close_gate()  # one peer, ever
        peer.setblocking(False)
        self.peer = peer
        self.loop.add_reader(peer.fileno(), self._receive)

    def _receive(self) -> None:
        assert self.peer is not None
        try:
            _, fds, _, _ = socket.recv_fds(self.peer, 16, MAX_FDS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        self.loop.remove_reader(self.peer.fileno())
        self.peer.close()
        self.peer = None
        first, *rest = fds or [-1]
        for fd in rest:
            os.close(fd)
        if first >= 0:
            self._take_listener(first)

    def _take_listener(self, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)  # family and type are read from the fd itself
        except OSError:
            os.close(fd)  # not a socket
            return
        try:
            ok = (
                sock.family == socket.AF_INET
                and sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                and sock.getsockname() == ("127.0.0.1", self.port)
            )
        except OSError:
            ok = False
        if not ok:
            log.warning("egress door: refused a descriptor that is not the sandbox's listener")
            sock.close()
            return
        sock.setblocking(False)
        sock.set_inheritable(False)  # recv_fds does not ask for CLOEXEC
        self.listener = sock
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        listener = self.listener
        assert listener is not None
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                self.loop.remove_reader(listener.fileno())
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: connections wait in the backlog; try again soon,
                    # rather than spin on a socket that stays readable.
                    log.warning("egress door: accept failed (%s); retrying", exc)
                    self.loop.call_later(RETRY_ACCEPT_S, self._resume, listener)
                else:
                    log.error("egress door: the listener failed (%s); the sandbox has no network", exc)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.arrived(conn)
            except Exception:
                log.exception("egress door: a connection could not be taken")
                conn.close()

    def _resume(self, listener: socket.socket) -> None:
        if self.listener is listener:
            self.loop.add_reader(listener.fileno(), self._accept)

    def close(self) -> None:
        self._close_gate()
        if self.peer is not None:
            self.loop.remove_reader(self.peer.fileno())
            self.peer.close()
            self.peer = None
        if self.listener is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None


async def streams(
    conn: socket.socket, initial: bytes, limit: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over an accepted connection, *initial* (bytes already read from it)
    first. Made as a server's are: start_tls needs the protocol marked server-side."""
    loop = asyncio.get_running_loop()
    made: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    reader.feed_data(initial)
    protocol = asyncio.StreamReaderProtocol(reader, lambda r, w: made.append((r, w)), loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, conn)
    return made[0]
