"""Relay a tunnel's bytes in the kernel: once a CONNECT is decided, nothing more needs to
be seen, so the two sockets leave the event loop and splice(2) moves the data (no copy
through Python)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

# Open at once over all sandboxes (threads start only as tunnels need them); past this, a
# tunnel waits for a pump. Each sandbox's network.max_connections (default 128, at most
# 1024) keeps one sandbox from taking them all.
MAX_TUNNELS = 2048


def detach(writer: asyncio.StreamWriter) -> socket.socket:
    """A blocking duplicate of the stream's socket; the asyncio transport is dropped."""
    sock: socket.socket = writer.get_extra_info("socket")
    twin = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    twin.setblocking(True)
    writer.transport.abort()
    return twin


PIPE_BYTES = 1 << 20  # fewer, larger moves than the default 64 KiB pipe allows


def pump(source: socket.socket, sink: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size: the default size still works
    try:
        while True:
            try:
                moved = os.splice(source.fileno(), write_end, 1 << 20)
            except OSError:
                moved = 0
            if moved == 0:
                break
            while moved:
                moved -= os.splice(read_end, sink.fileno(), moved)
    except OSError:
        pass
    finally:
        os.close(read_end)
        os.close(write_end)
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Pumps:
    """The threads that relay tunnels, owned by one proxy and stopped with it.

    Reused threads: a tunnel's two pumps block for its whole life, and starting two fresh
    threads for every connection cost a measurable part of the proxy's added latency. Two
    pools: a tunnel's first thread waits for its second, which must never queue behind
    first threads."""

    def __init__(self, max_tunnels: int = MAX_TUNNELS) -> None:
        self.front = ThreadPoolExecutor(max_workers=max_tunnels, thread_name_prefix="egress-tunnel")
        self._back = ThreadPoolExecutor(max_workers=max_tunnels, thread_name_prefix="egress-back")
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.closed = False

    def tunnel(self, a: socket.socket, b: socket.socket) -> None:
        """Both directions, blocking until both ends are done (run it on `front`)."""
        with self._lock:
            if self.closed:
                a.close()
                b.close()
                return
            self._open.update((a, b))
        try:
            back = self._back.submit(pump, b, a)
            pump(a, b)
            back.result()
        finally:
            with self._lock:
                self._open.difference_update((a, b))
            a.close()
            b.close()

    def close(self) -> None:
        """End every tunnel (their sockets shut down, the pumps return) and the threads."""
        with self._lock:
            self.closed = True
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.front.shutdown(wait=False, cancel_futures=True)
        self._back.shutdown(wait=False, cancel_futures=True)
