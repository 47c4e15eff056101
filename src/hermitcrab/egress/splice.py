"""Relay a tunnel's bytes in the kernel: once a CONNECT is decided, nothing more needs to
be seen, so the two sockets leave the event loop and splice(2) moves the data (no copy
through Python). (The sandbox's supervisor has its own copy of this loop: it runs alone,
on the standard library only.)"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any


def detach(writer: asyncio.StreamWriter) -> socket.socket:
    """A blocking duplicate of the stream's socket; the asyncio transport is dropped."""
    sock: socket.socket = writer.get_extra_info("socket")
    twin = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    twin.setblocking(True)
    writer.transport.abort()
    return twin


def pump(source: socket.socket, sink: socket.socket) -> None:
    read_end, write_end = os.pipe()
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


async def relay(a: socket.socket, b: socket.socket) -> None:
    """Both directions, each on a thread of its own (not the shared executor, which a few
    long downloads would fill), until both ends are done."""
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[Any]] = []
    for source, sink in ((a, b), (b, a)):
        future: asyncio.Future[Any] = loop.create_future()

        def run(
            source: socket.socket = source, sink: socket.socket = sink, future: asyncio.Future[Any] = future
        ) -> None:
            try:
                pump(source, sink)
            finally:
                loop.call_soon_threadsafe(future.set_result, None)

        threading.Thread(target=run, name="egress-relay", daemon=True).start()
        done.append(future)
    try:
        await asyncio.gather(*done)
    finally:
        a.close()
        b.close()
