"""Dialing out and relaying tunnels: the proxy's blocking work, on threads of its own.

A dial resolves the name once, checks every address against the rule (the address
filter), and connects to that very address: a name cannot be re-pointed between the
check and the connection. A CONNECT tunnel, once decided, is relayed by splice(2).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from hermitcrab.egress import http1, splice
from hermitcrab.egress.heads import ESTABLISHED, Refused, refusal
from hermitcrab.egress.ledger import NetAudit, Release
from hermitcrab.policy.network import NetDecision, address_problem

log = logging.getLogger("hermitcrab.egress")

CONNECT_TIMEOUT_S = 10.0
# Dials block (name resolution, connect): their own threads, not the loop's default pool,
# which the rest of the gateway shares.
MAX_DIALS = 64


class Dialer:
    def __init__(self, audit: NetAudit, upstream_tls: ssl.SSLContext) -> None:
        self.audit = audit
        self.upstream_tls = upstream_tls  # how terminated TLS checks the real servers
        self.pool = ThreadPoolExecutor(max_workers=MAX_DIALS, thread_name_prefix="egress-dial")

    def dial(self, sandbox: str, decision: NetDecision, host: str, port: int, what: str) -> socket.socket:
        """Resolve (once), check each address, connect (blocking: run it off the loop)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self.audit(sandbox, "failed", decision.rule_name, what, f"cannot resolve {host}: {exc}")
            raise Refused(502, f"cannot resolve {host}: {exc.strerror}", decision.rule_name) from None
        except (UnicodeError, ValueError) as exc:  # a label over 63 bytes, a NUL, ...
            self.audit(sandbox, "denied", decision.rule_name, what, f"not a host name: {exc}")
            raise Refused(400, f"{host[:100]!r} is not a host name", decision.rule_name) from None
        problems = []
        for family, kind, proto, _, address in infos:
            ip = address[0]
            problem = address_problem(ip, decision.rule)
            if problem:
                problems.append(problem)
                continue
            sock = socket.socket(family, kind, proto)
            sock.settimeout(CONNECT_TIMEOUT_S)
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                problems.append(f"{ip}: {exc}")
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.audit(sandbox, "allowed", decision.rule_name, what, f"{decision.reason}; connected to {ip}")
            return sock
        reason = "; ".join(problems) or f"no address for {host}"
        self.audit(sandbox, "denied", decision.rule_name, what, reason)
        raise Refused(403 if any("only a rule" in p for p in problems) else 502, reason, decision.rule_name)

    async def open(
        self, sandbox: str, decision: NetDecision, host: str, port: int, what: str, tls: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A dialed connection as streams, with the proxy's own TLS where `tls`."""
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self.pool, self.dial, sandbox, decision, host, port, what)
        sock.setblocking(False)
        if not tls:
            return await asyncio.open_connection(sock=sock, limit=http1.CHUNK)
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    sock=sock, ssl=self.upstream_tls, server_hostname=host, limit=http1.CHUNK
                ),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            sock.close()
            self.audit(sandbox, "failed", decision.rule_name, what, f"TLS with {host} failed: {exc}")
            raise Refused(502, f"TLS with {host}:{port} failed: {exc}", decision.rule_name) from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Tunnels:
    """Decided CONNECTs: dialed, answered and relayed on one reused thread each."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer
        self.pumps = splice.Pumps()

    def start(
        self,
        sandbox: str,
        decision: NetDecision,
        host: str,
        port: int,
        conn: socket.socket,
        early: bytes,
        release: Release,
    ) -> None:
        """The hot path, from the event loop: nothing more of it is needed."""

        def run() -> None:
            try:
                self.blocking(sandbox, decision, host, port, conn, early)
            finally:
                release()

        try:
            self.pumps.front.submit(run)
        except RuntimeError:  # shutting down
            conn.close()
            release()

    async def relay(
        self, sandbox: str, decision: NetDecision, host: str, port: int, conn: socket.socket, early: bytes
    ) -> None:
        """A tunnel decided on the full path (a person may have been asked)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self.pumps.front, self.blocking, sandbox, decision, host, port, conn, early
        )

    def blocking(
        self, sandbox: str, decision: NetDecision, host: str, port: int, conn: socket.socket, early: bytes
    ) -> None:
        """Dial, say yes, relay until both ends are done; `early` is what the client sent
        after its CONNECT head."""
        try:
            conn.setblocking(True)
            try:
                upstream = self.dialer.dial(sandbox, decision, host, port, f"CONNECT {host}:{port}")
            except Refused as refused:
                conn.sendall(refusal(refused))
                conn.close()
                return
            try:
                conn.sendall(ESTABLISHED)
                if early:
                    upstream.sendall(early)
            except OSError:
                conn.close()
                upstream.close()
                return
            self.pumps.tunnel(conn, upstream)
        except OSError:
            conn.close()
        except Exception:
            conn.close()
            log.exception("egress tunnel failed", extra={"sandbox": sandbox})

    def close(self) -> None:
        self.pumps.close()
