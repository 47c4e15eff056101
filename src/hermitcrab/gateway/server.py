"""Run the daemon in this process: check the bind address, hold the pidfile, serve."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import IO

from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError
from hermitcrab.gateway.logs import setup_logging

log = logging.getLogger("hermitcrab.gateway")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PidFile:
    """An exclusively locked pidfile: the lock, not the file's existence, says we run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise GatewayError(
                f"the gateway is already running (pid {pid}). fix: `hermitcrab down` first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()
            self._handle = None


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise GatewayError(
                f"cannot listen on {host}:{port}: {exc.strerror}. fix: stop what uses the port "
                "or set gateway.port in hermitcrab.yaml"
            ) from None


def serve(paths: Paths, foreground: bool) -> None:
    """Load everything, then serve until SIGTERM/SIGINT. Raises before binding on bad config."""
    config = load_config(paths.config)
    gateway_config = config.gateway
    if not is_loopback(gateway_config.host) and not gateway_config.allow_non_loopback:
        raise GatewayError(
            f"{paths.config}: gateway.host is {gateway_config.host}, which is not loopback: anyone on the "
            "network could reach the agent. fix: use 127.0.0.1, or set gateway.allow_non_loopback: true"
        )
    if not paths.token.is_file():
        raise GatewayError(f"{paths.token} is missing. fix: run `hermitcrab onboard`")
    pidfile = PidFile(paths.pidfile)
    pidfile.acquire()
    try:
        check_port_free(gateway_config.host, gateway_config.port)
        setup_logging(paths.gateway_log, also_stderr=foreground)
        import uvicorn

        from hermitcrab.gateway.app import build_app
        from hermitcrab.gateway.service import Gateway

        gateway = Gateway(paths, config)
        log.info("gateway starting", extra={"url": gateway.url, "pid": os.getpid()})
        server = _idle_server_class(uvicorn.Server)(
            uvicorn.Config(
                build_app(gateway),
                host=gateway_config.host,
                port=gateway_config.port,
                log_config=None,
                access_log=False,
                lifespan="on",
                date_header=False,  # it would be refreshed by a tick the idle server does not run
                timeout_graceful_shutdown=int(gateway_config.shutdown_timeout_seconds),
            )
        )
        server.run()
        if not server.started:
            raise GatewayError(f"the gateway failed to start; see {paths.gateway_log}")
        log.info("gateway stopped", extra={"pid": os.getpid()})
    finally:
        pidfile.release()


def _say_ready() -> None:
    """Tell `hermitcrab up` (through the pipe it gave us) that we listen and answer."""
    fd = os.environ.pop("HERMITCRAB_READY_FD", None)
    if fd is None or not fd.isdigit():
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except OSError:
        pass  # `up` is gone: nobody waits


def _idle_server_class(base: type) -> type:
    """uvicorn's server wakes ten times a second to look for a shutdown request; this one
    sleeps until a signal asks for it, so that an idle gateway is idle."""
    import asyncio

    class IdleServer(base):  # type: ignore[misc, valid-type]
        _stop: asyncio.Event | None = None
        _loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            _say_ready()
            if not self.should_exit:
                await self._stop.wait()

        def handle_exit(self, sig: int, frame: object) -> None:
            super().handle_exit(sig, frame)
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)

    return IdleServer
