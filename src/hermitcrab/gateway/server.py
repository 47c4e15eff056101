"""Run the daemon in this process: check the bind address, hold the pidfile, serve."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError, HermitCrabError
from hermitcrab.gateway.crashes import STOPPED_EXIT, CrashLedger, CrashLoop
from hermitcrab.gateway.logs import setup_logging

if TYPE_CHECKING:
    from hermitcrab.scheduler import Clock

log = logging.getLogger("hermitcrab.gateway")

READY_FD_ENV = "HERMITCRAB_READY_FD"  # where `hermitcrab up` waits for our word


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

    def acquire(self) -> str | None:
        """Lock it and write our pid; returns the pid a run that never released it left."""
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
        left = handle.read().strip() or None  # release() unlinks: a pid here never shut down
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return left

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


def run_daemon(paths: Paths, foreground: bool) -> int:
    """The daemon's life, as an exit code: a fault found at start is said on stderr (the
    daemon's log, when detached) and to `hermitcrab up` through its pipe."""
    ledger = CrashLedger(paths.crashes)
    try:
        serve(paths, foreground, ledger)
    except CrashLoop as exc:
        log.error("crash loop: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        tell_starter("error", json.dumps(str(exc)))
        return STOPPED_EXIT
    except HermitCrabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        tell_starter("error", json.dumps(str(exc)))
        ledger.record(f"start failed: {exc}")
        return 1
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        ledger.record(f"crashed: {exc!r}")
        raise
    return 0


def serve(paths: Paths, foreground: bool, ledger: CrashLedger | None = None) -> None:
    """Load everything, then serve until SIGTERM/SIGINT. Raises before binding on bad config,
    and before anything else when the ledger says a crash loop must stop."""
    config = load_config(paths.config, cache=paths.config_cache)
    gateway_config = config.gateway
    tell_starter("timeout", str(gateway_config.startup_timeout_seconds))
    if not is_loopback(gateway_config.host) and not gateway_config.allow_non_loopback:
        raise GatewayError(
            f"{paths.config}: gateway.host is {gateway_config.host}, which is not loopback: anyone on the "
            "network could reach the agent. fix: use 127.0.0.1, or set gateway.allow_non_loopback: true"
        )
    if not paths.token.is_file():
        raise GatewayError(f"{paths.token} is missing. fix: run `hermitcrab onboard`")
    tls = _tls_files(paths, gateway_config.tls_cert, gateway_config.tls_key)
    pidfile = PidFile(paths.pidfile)
    left = pidfile.acquire()
    # Until the server takes signals over, a SIGTERM (`down`, the service manager) ends the
    # start cleanly, pidfile released, rather than leave what reads as a crash.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        setup_logging(paths.gateway_log, also_stderr=foreground)
        if ledger is not None:
            _back_off(ledger, left)
        check_port_free(gateway_config.host, gateway_config.port)
        import uvicorn

        from hermitcrab.gateway.app import build_app
        from hermitcrab.gateway.service import Gateway

        gateway = Gateway(paths, config, clock=_bench_clock())
        log.info("gateway starting", extra={"url": gateway.url, "pid": os.getpid()})
        server = _idle_server_class(uvicorn.Server, gateway_config.local_url)(
            uvicorn.Config(
                build_app(gateway),
                host=gateway_config.host,
                port=gateway_config.port,
                log_config=None,
                access_log=False,
                lifespan="on",
                date_header=False,  # it would be refreshed by a tick the idle server does not run
                timeout_graceful_shutdown=int(gateway_config.shutdown_timeout_seconds),
                ssl_certfile=tls[0] if tls else None,
                ssl_keyfile=tls[1] if tls else None,
            )
        )
        server.run()
        if not server.started:
            raise GatewayError(f"the gateway failed to start; see {paths.gateway_log}")
        log.info("gateway stopped", extra={"pid": os.getpid()})
    finally:
        pidfile.release()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _back_off(ledger: CrashLedger, left: str | None) -> None:
    """Count the last run's unclean end, if it had one; then stop, wait, or go on."""
    if left is not None:
        ledger.record(f"the run with pid {left} ended without shutting down")
    wait = ledger.check()
    if wait:
        import time

        recent = len(ledger.recent())
        log.warning("%d unclean ends in 10 minutes: waiting %.0f s before starting", recent, wait)
        time.sleep(wait)


def _bench_clock() -> Clock | None:
    """HERMITCRAB_SCHEDULER_SPEED=N runs the scheduler's clock N times faster than the wall's:
    for the soak bench's simulated days, never for real use."""
    speed = os.environ.get("HERMITCRAB_SCHEDULER_SPEED")
    if not speed:
        return None
    import time

    from hermitcrab.scheduler import SimulatedClock

    log.warning("the scheduler's clock runs %s times fast (HERMITCRAB_SCHEDULER_SPEED)", speed)
    return SimulatedClock(time.time(), float(speed))


def tell_starter(word: str, value: str) -> None:
    """One line to `hermitcrab up` through the pipe it gave us: `timeout SECONDS` once the
    config loads, then `ready URL` once we listen and answer, or `error JSON-STRING`. `up`
    itself reads no config: pydantic's import would cost it 0.1 s before the daemon starts."""
    fd = os.environ.get(READY_FD_ENV, "")
    if not fd.isdigit():
        return
    try:
        os.write(int(fd), f"{word} {value}\n".encode())
    except OSError:
        pass  # `up` is gone: nobody waits
    if word != "timeout":  # the last word
        os.environ.pop(READY_FD_ENV, None)
        with contextlib.suppress(OSError):
            os.close(int(fd))


def _idle_server_class(base: type, url: str) -> type:
    """uvicorn's server wakes ten times a second to look for a shutdown request; this one
    sleeps until a signal asks for it, so that an idle gateway is idle."""
    import asyncio

    class IdleServer(base):  # type: ignore[misc, valid-type]
        _stop: asyncio.Event | None = None
        _loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            tell_starter("ready", url)
            if not self.should_exit:
                await self._stop.wait()

        def handle_exit(self, sig: int, frame: object) -> None:
            super().handle_exit(sig, frame)
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)

    return IdleServer


def _tls_files(paths: Paths, cert: str | None, key: str | None) -> tuple[str, str] | None:
    """The gateway's certificate and key, checked before anything binds: a pair that does not
    load is said, with the file, not found out by the first client."""
    if cert is None or key is None:
        return None
    import ssl

    files = str(Path(cert).expanduser()), str(Path(key).expanduser())
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(*files)
    except (OSError, ssl.SSLError) as exc:
        raise GatewayError(
            f"{paths.config}: gateway.tls_cert/tls_key ({files[0]}, {files[1]}) do not load: {exc}. "
            "fix: PEM files, the key matching the certificate"
        ) from None
    return files
