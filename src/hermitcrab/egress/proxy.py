"""The egress proxy: HTTP CONNECT and plain-HTTP forwarding, one Unix socket per sandbox.

Every connection is decided by the sandbox's network policy as it is *now* (rules reload
live), recorded in the audit log, and only then opened. The proxy resolves the name
itself, once, and connects to that very address, so a name cannot be re-pointed between
the check and the connection, and no DNS ever leaves the sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hermitcrab.approvals import Approvals
from hermitcrab.egress import SANDBOX_HEADER, http1, splice
from hermitcrab.egress.ca import SandboxCA
from hermitcrab.egress.door import Door, streams
from hermitcrab.egress.http1 import Downstream, Upstream
from hermitcrab.egress.secrets import SecretError, SecretStore, find_secret
from hermitcrab.policy.network import (
    NetDecision,
    address_problem,
    connection_decision,
    normalise_path,
    request_decision,
)
from hermitcrab.policy.schema import NetworkPolicy
from hermitcrab.store import AuditEntry, AuditLog

log = logging.getLogger("hermitcrab.egress")

MAX_HEAD = http1.MAX_HEAD
CHUNK = http1.CHUNK
CONNECT_TIMEOUT_S = 10.0
HEAD_TIMEOUT_S = 30.0
# Headers some frameworks read as the request's real method: under L7 rules, never passed.
METHOD_OVERRIDES = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
MAX_REFUSALS_PER_CONNECTION = 16  # then the connection is closed
# Requests up to this size are screened for secrets on the event loop (it takes
# microseconds); larger ones on a worker thread.
SCREEN_ON_LOOP_BYTES = 64 * 1024
# Dials block (name resolution, connect): their own threads, not the loop's default pool,
# which the rest of the gateway shares.
MAX_DIALS = 64  # connects (DNS, then TCP) at once; each blocks a thread
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"

NetworkSource = Callable[[], NetworkPolicy]
INFERENCE_HOST = "inference.local"
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/models"})
RULE_HEADER = "X-HermitCrab-Rule"
HOST_NAME = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")  # a name or an IP (IPv6 comes unbracketed)


@dataclass(frozen=True)
class InferenceRoute:
    """Where inference.local leads: the gateway's own OpenAI-compatible API."""

    host: str
    port: int
    token: Callable[[], str]
    # What the gateway's API would take (gateway.max_request_bytes); larger is refused here,
    # before it costs a screen.
    max_body_bytes: int = 1024 * 1024


Release = Callable[[], None]


class OpenCounts:
    """Open connections per sandbox, against network.max_connections: one sandbox cannot
    take every tunnel thread and descriptor the gateway has. Entered on the event loop,
    left from wherever a connection ends (tunnel threads too), hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._refused: dict[str, tuple[float, int]] = {}  # last audit time, refused since

    def enter(self, sandbox: str, limit: int) -> bool:
        with self._lock:
            count = self._open.get(sandbox, 0)
            if count >= limit:
                return False
            self._open[sandbox] = count + 1
            return True

    def releaser(self, sandbox: str) -> Release:
        done = threading.Event()

        def release() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                self._open[sandbox] -= 1

        return release

    def refused(self, sandbox: str) -> int:
        """Counts a refusal; returns how many to audit now (0: not yet, at most once a second)."""
        with self._lock:
            last, count = self._refused.get(sandbox, (0.0, 0))
            count += 1
            now = time.monotonic()
            if now - last < 1.0:
                self._refused[sandbox] = (last, count)
                return 0
            self._refused[sandbox] = (now, 0)
            return count

    def count(self, sandbox: str) -> int:
        with self._lock:
            return self._open.get(sandbox, 0)


@dataclass(frozen=True)
class Hop:
    """Where one request goes, decided: the connection it needs (key) and what to send."""

    key: Any  # (host, port, tls), or INFERENCE_HOST
    what: str  # for the audit log
    decision: NetDecision | None  # None for inference.local
    origin: str  # path and query
    headers: list[tuple[str, str]]
    # The credential the proxy added, in the forms a server could echo it back in: masked
    # in the response, so that what the proxy injects never reaches the sandbox.
    masked: tuple[bytes, ...] = ()


@dataclass
class Head:
    """A connection's first request head, read to choose a path: CONNECT or forwarding
    (where http1 reads it again, whole)."""

    method: str
    target: str
    raw: bytes  # up to and including its blank line


class Refused(Exception):
    def __init__(self, status: int, reason: str, rule: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.rule = rule


class EgressProxy:
    def __init__(
        self,
        audit: AuditLog | None,
        approvals: Approvals,
        secrets: SecretStore | None = None,
        upstream_tls: ssl.SSLContext | None = None,
        inference: InferenceRoute | None = None,
    ) -> None:
        self.audit = audit
        self.approvals = approvals
        self.secrets = secrets
        # How the proxy checks the servers it terminates TLS for: the system's roots by default.
        self.upstream_tls = upstream_tls or ssl.create_default_context()
        self._doors: dict[str, Door] = {}
        self._networks: dict[str, NetworkSource] = {}
        self._budgets: dict[str, http1.BodyBudget] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = OpenCounts()
        self._cas: dict[str, SandboxCA] = {}
        self.inference = inference
        # Threads of our own, stopped in close_all(): none outlive the proxy.
        self._dials = ThreadPoolExecutor(max_workers=MAX_DIALS, thread_name_prefix="egress-dial")
        self._pumps = splice.Pumps()

    def ca(self, sandbox: str, folder: Path) -> SandboxCA:
        """The sandbox's CA (made on first use), for the TLS this proxy terminates."""
        ca = self._cas.get(sandbox)
        if ca is None:
            ca = self._cas[sandbox] = SandboxCA(folder, sandbox)
        return ca

    async def listen(self, sandbox: str, path: Path, network: NetworkSource, port: int) -> None:
        """Open one sandbox's door: a Unix socket, bound into it, through which its
        supervisor hands over the listening socket on 127.0.0.1:PORT inside (its programs'
        only way out)."""
        old = self._doors.pop(sandbox, None)
        if old is not None:
            old.close()
        self._networks[sandbox] = network
        self._doors[sandbox] = Door(path, port, lambda conn: self._arrived(sandbox, network, conn))

    async def knock(self, sandbox: str) -> socket.socket:
        """A connection into the proxy as if from inside the sandbox (same policy, same
        audit): for tools on the host. Returns the caller's end, blocking."""
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self._arrived(sandbox, self._networks[sandbox], ours)
        return theirs

    async def close(self, sandbox: str) -> None:
        door = self._doors.pop(sandbox, None)
        self._cas.pop(sandbox, None)
        self._networks.pop(sandbox, None)
        self._budgets.pop(sandbox, None)
        if door is not None:
            door.close()

    async def close_all(self) -> None:
        """Close every door, end every tunnel and stop the proxy's threads."""
        for sandbox in list(self._doors):
            await self.close(sandbox)
        self._pumps.close()
        self._dials.shutdown(wait=False, cancel_futures=True)

    def _arrived(self, sandbox: str, network: NetworkSource, conn: socket.socket) -> None:
        """A connection from the sandbox: counted against its limit, then its request head
        is read on the event loop (no task, no thread while a slow client dawdles), then
        _dispatch. Whatever path it takes releases its count when it ends."""
        limit = network().max_connections
        if not self._counts.enter(sandbox, limit):
            self._refuse_overflow(sandbox, conn, limit)
            return
        release = self._counts.releaser(sandbox)
        loop = asyncio.get_running_loop()
        head = bytearray()
        waiting: list[asyncio.TimerHandle] = []

        def read() -> bool:
            """True once there is nothing more to wait for (the head, or the end)."""
            try:
                data = conn.recv(MAX_HEAD)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                data = b""
            head.extend(data)
            return not data or b"\r\n\r\n" in head or len(head) >= MAX_HEAD

        def finish() -> None:
            if waiting:  # stop watching before anything else may close the socket
                waiting[0].cancel()
                loop.remove_reader(conn.fileno())
            if b"\r\n\r\n" in head or len(head) >= MAX_HEAD:
                self._dispatch(sandbox, network, conn, bytes(head), release)
            else:  # closed, or timed out, before a whole head
                conn.close()
                release()

        def on_readable() -> None:
            if read():
                finish()

        def give_up() -> None:
            head.clear()
            finish()

        if read():  # the head is often there already
            finish()
            return
        waiting.append(loop.call_later(HEAD_TIMEOUT_S, give_up))
        loop.add_reader(conn.fileno(), on_readable)

    def _refuse_overflow(self, sandbox: str, conn: socket.socket, limit: int) -> None:
        refused = Refused(
            503,
            f"this sandbox already has {limit} connections open (network.max_connections). "
            "fix: close some, or raise the limit in the policy",
            "network.max_connections",
        )
        with contextlib.suppress(OSError):
            conn.send(_refusal(refused))
        conn.close()
        # One audit entry a second at most: a flood must not flood the log too.
        count = self._counts.refused(sandbox)
        if count:
            self._audit(sandbox, "denied", refused.rule, "connection", f"{refused.reason} ({count} refused)")

    def _dispatch(
        self, sandbox: str, network: NetworkSource, conn: socket.socket, head: bytes, release: Release
    ) -> None:
        """The hot path: a CONNECT that the policy allows outright needs nothing more from
        the event loop, so a tunnel thread dials, answers and relays it. Everything else
        (approvals, terminated TLS, plain HTTP, refusals) takes the full path."""
        try:
            request = _parse_head(head) if b"\r\n\r\n" in head else None
            if request is not None and request.method == "CONNECT":
                host, port = _split_host_port(request.target, 443)
                decision = connection_decision(network(), host, port)
                rule = decision.rule
                # A plain tunnel: the rule neither terminates TLS nor checks requests (L7).
                plain = rule is None or (rule.tls != "terminate" and not rule.allow and not rule.deny)
                if decision.verdict == "allow" and plain and not self._in_host_name(host):
                    early = head[len(request.raw) :]
                    try:
                        self._pumps.front.submit(
                            self._tunnel, sandbox, decision, host, port, conn, early, release
                        )
                    except RuntimeError:  # shutting down
                        conn.close()
                        release()
                    return
        except Exception:
            pass  # the full path decides again, and reports what went wrong
        serving = self._serve_conn(sandbox, network, conn, head, release)
        task = asyncio.get_running_loop().create_task(serving)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tunnel(
        self,
        sandbox: str,
        decision: NetDecision,
        host: str,
        port: int,
        conn: socket.socket,
        early: bytes,
        release: Release,
    ) -> None:
        """On a tunnel thread, blocking: dial, say yes, relay until both ends are done."""
        try:
            self._tunnel_blocking(sandbox, decision, host, port, conn, early)
        finally:
            release()

    def _tunnel_blocking(
        self, sandbox: str, decision: NetDecision, host: str, port: int, conn: socket.socket, early: bytes
    ) -> None:
        try:
            conn.setblocking(True)
            try:
                upstream = self._dial(sandbox, decision, host, port, f"CONNECT {host}:{port}")
            except Refused as refused:
                conn.sendall(_refusal(refused))
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
            self._pumps.tunnel(conn, upstream)
        except OSError:
            conn.close()
        except Exception:
            conn.close()
            log.exception("egress tunnel failed", extra={"sandbox": sandbox})

    async def _serve_conn(
        self, sandbox: str, network: NetworkSource, conn: socket.socket, head: bytes, release: Release
    ) -> None:
        try:
            try:
                reader, writer = await streams(conn, head, MAX_HEAD)
            except OSError:
                conn.close()
                return
            await self._serve(sandbox, network, reader, writer)
        finally:
            release()

    async def _serve(
        self, sandbox: str, network: NetworkSource, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = await _read_head(reader)
            if request is None:
                return
            if request.method == "CONNECT":
                await self._connect(sandbox, network, request, reader, writer)
            else:
                down = Downstream(reader, writer, self._budget(sandbox), request.raw)
                await self._forward(sandbox, network, down)
        except Refused as refused:
            await _refuse(writer, refused)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("egress proxy failed", extra={"sandbox": sandbox})
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _decide(
        self, sandbox: str, network: NetworkPolicy, host: str, port: int, what: str
    ) -> NetDecision:
        decision = connection_decision(network, host, port)
        if decision.verdict == "ask":
            self._audit(sandbox, "asked", decision.rule_name, what, decision.reason)
            approval = await self.approvals.ask(
                sandbox, host, port, decision.rule_name, network.approval_timeout_seconds
            )
            if approval.state != "approved":
                reason = (
                    f"nobody approved {host}:{port} within {network.approval_timeout_seconds:g} s"
                    if approval.state == "expired"
                    else f"a person denied {host}:{port} (approval {approval.id})"
                )
                self._audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(403, reason, decision.rule_name)
            approved = f"approved by {approval.decided_by or 'a person'} (approval {approval.id})"
            self._audit(sandbox, "approved", decision.rule_name, what, approved)
            decision = NetDecision("allow", decision.rule, approved)
        if decision.verdict != "allow":
            self._audit(sandbox, "denied", decision.rule_name, what, decision.reason)
            raise Refused(
                403,
                f"{decision.reason}. fix: add a network rule for {host}:{port} to the policy "
                "(`hermitcrab policy set FILE`)",
                decision.rule_name,
            )
        return decision

    def _dial(self, sandbox: str, decision: NetDecision, host: str, port: int, what: str) -> socket.socket:
        """Resolve (once), check each address, connect (blocking: run it off the loop)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self._audit(sandbox, "failed", decision.rule_name, what, f"cannot resolve {host}: {exc}")
            raise Refused(502, f"cannot resolve {host}: {exc.strerror}", decision.rule_name) from None
        except (UnicodeError, ValueError) as exc:  # a label over 63 bytes, a NUL, ...
            self._audit(sandbox, "denied", decision.rule_name, what, f"not a host name: {exc}")
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
            self._audit(sandbox, "allowed", decision.rule_name, what, f"{decision.reason}; connected to {ip}")
            return sock
        reason = "; ".join(problems) or f"no address for {host}"
        self._audit(sandbox, "denied", decision.rule_name, what, reason)
        raise Refused(403 if any("only a rule" in p for p in problems) else 502, reason, decision.rule_name)

    async def _open(
        self, sandbox: str, decision: NetDecision, host: str, port: int, what: str, tls: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self._dials, self._dial, sandbox, decision, host, port, what)
        sock.setblocking(False)
        if not tls:
            return await asyncio.open_connection(sock=sock, limit=CHUNK)
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(sock=sock, ssl=self.upstream_tls, server_hostname=host, limit=CHUNK),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            sock.close()
            self._audit(sandbox, "failed", decision.rule_name, what, f"TLS with {host} failed: {exc}")
            raise Refused(502, f"TLS with {host}:{port} failed: {exc}", decision.rule_name) from None

    async def _connect(
        self,
        sandbox: str,
        network: NetworkSource,
        request: Head,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, port = _split_host_port(request.target, 443)
        what = f"CONNECT {host}:{port}"
        decision = await self._decide(sandbox, network(), host, port, what)
        self._screen_host(sandbox, decision, what, host)
        rule = decision.rule
        if rule is not None and rule.tls == "terminate":
            await self._terminate(sandbox, network, decision, host, port, reader, writer)
            return
        if rule is not None and (rule.allow or rule.deny):
            # Its L7 rules could not see inside a tunnel: only plain http:// (or tls:
            # terminate) lets them check each request.
            reason = (
                f"rule '{rule.name}' checks each request (allow/deny), which a tunnel would hide. "
                "fix: send plain http:// through the proxy, or set tls: terminate on the rule"
            )
            self._audit(sandbox, "denied", decision.rule_name, what, reason)
            raise Refused(403, reason, decision.rule_name)
        # Decided (a person may have been asked): the rest is the hot path's, on a tunnel thread.
        early = bytes(reader._buffer)  # read already, so it must be sent on
        client = splice.detach(writer)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._pumps.front, self._tunnel_blocking, sandbox, decision, host, port, client, early
        )

    async def _terminate(
        self,
        sandbox: str,
        network: NetworkSource,
        decision: NetDecision,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Speak TLS to the sandbox with a certificate from its CA, and see each request
        inside: decided by the L7 rules, screened for secrets, sent on over the proxy's own
        TLS connection to the real server."""
        ca = self._cas.get(sandbox)
        if ca is None:
            raise Refused(502, f"rule '{decision.rule_name}' terminates TLS, but this sandbox has no CA")
        context = await asyncio.to_thread(ca.server_context, host)
        # Stop reading before saying yes: the client's TLS hello must reach the TLS layer,
        # not the plain-text buffer (start_tls resumes reading once it is in place).
        writer.transport.pause_reading()
        writer.write(ESTABLISHED)
        await writer.start_tls(context)

        async def route(request: http1.Request) -> Hop:
            url = urlsplit(request.target)
            if url.netloc and (url.hostname != host or (url.port or 443) != port):
                raise Refused(
                    400, f"this connection is to {host}:{port}, not {url.netloc}", decision.rule_name
                )
            what = f"{request.method} https://{host}:{port}{url.path or '/'}"
            current = self._still_allowed(sandbox, network(), decision, host, port, what)
            path, headers = await self._screen(
                sandbox, current, request, url.path or "/", url.query, what, encrypted=True
            )
            headers = _with_host(headers, host, port, 443)
            masked = self._injected(current)
            return Hop((host, port, True), what, current, _origin(path, url.query), headers, masked)

        await self._exchanges(sandbox, Downstream(reader, writer, self._budget(sandbox)), route)

    async def _forward(self, sandbox: str, network: NetworkSource, down: Downstream) -> None:
        """Plain HTTP: each request names its server (absolute URL), and is decided alone."""

        async def route(request: http1.Request) -> Hop:
            url = urlsplit(request.target)
            if url.scheme != "http" or not url.hostname:
                raise Refused(
                    400, f"the proxy forwards absolute http:// URLs (and CONNECT), not {request.target!r}"
                )
            host, port = url.hostname.lower(), url.port or 80
            if not HOST_NAME.fullmatch(host):  # literal names only, as a CONNECT's: no '*.example.org'
                raise Refused(400, f"{url.hostname[:200]!r} is not a host name")
            path = url.path or "/"
            what = f"{request.method} http://{host}:{port}{path}"
            if host == INFERENCE_HOST:
                return await self._inference_hop(sandbox, request, path, url.query, what)
            decision = await self._decide(sandbox, network(), host, port, what)
            self._screen_host(sandbox, decision, what, host)
            path, headers = await self._screen(
                sandbox, decision, request, path, url.query, what, encrypted=False
            )
            headers = _with_host(headers, host, port, 80)
            return Hop((host, port, False), what, decision, _origin(path, url.query), headers)

        await self._exchanges(sandbox, down, route)

    def _still_allowed(
        self, sandbox: str, network: NetworkPolicy, decided: NetDecision, host: str, port: int, what: str
    ) -> NetDecision:
        """A kept-alive terminated connection outlives policy changes: each request is held
        to the rules as they are now (its L7 rules and credential too)."""
        now = connection_decision(network, host, port)
        rule = now.rule
        if now.verdict == "deny" or rule is None or rule.name != decided.rule_name or rule.tls != "terminate":
            reason = f"the policy for {host}:{port} changed under this connection ({now.reason}); reconnect"
            self._audit(sandbox, "denied", now.rule_name, what, reason)
            raise Refused(403, reason, now.rule_name)
        return NetDecision("allow", rule, decided.reason)  # an approval, once given, holds here

    async def _inference_hop(
        self, sandbox: str, request: http1.Request, path: str, query: str, what: str
    ) -> Hop:
        """http://inference.local/v1/... goes to the gateway's model router, with the
        gateway's key added here: the sandbox holds no key, and reaches nothing else of
        the gateway (its control API stays out of reach)."""
        route = self.inference
        if route is None:
            raise Refused(502, "inference.local is not served here (no gateway)", INFERENCE_HOST)
        if path not in INFERENCE_PATHS:
            self._audit(sandbox, "denied", INFERENCE_HOST, what, f"{path} is not a model API path")
            raise Refused(
                403, f"inference.local serves only {', '.join(sorted(INFERENCE_PATHS))}", INFERENCE_HOST
            )
        if len(request.body) > route.max_body_bytes:
            self._audit(sandbox, "denied", INFERENCE_HOST, what, f"a body of {len(request.body)} bytes")
            raise Refused(
                413, f"inference.local takes bodies of at most {route.max_body_bytes} bytes", INFERENCE_HOST
            )
        dropped = {"authorization", "host", SANDBOX_HEADER.lower()}
        headers = [(k, v) for k, v in request.headers if k.lower() not in dropped]
        # The model may be a remote provider's: no secret rides out in a prompt either.
        inference = NetDecision("allow", None, "the gateway's model router")
        await self._screen_request(sandbox, inference, what, request, headers)
        headers += [
            ("Host", f"{route.host}:{route.port}"),
            ("Authorization", f"Bearer {route.token()}"),
            (SANDBOX_HEADER, sandbox),  # whose model route to take; only the proxy sets it
        ]
        return Hop(INFERENCE_HOST, what, None, _origin(path, query), headers)

    async def _exchanges(
        self, sandbox: str, down: Downstream, route: Callable[[http1.Request], Awaitable[Hop]]
    ) -> None:
        """Request after request on one kept-alive connection: each routed (decided and
        screened), sent on, and answered; a refused request is answered and the next one
        read. The server's connection is kept for the next request to the same place."""
        up: Upstream | None = None
        refusals = 0
        try:
            while True:
                try:
                    request = await down.request()
                except http1.HttpError as exc:
                    if down.can_respond:
                        await down.refuse(exc.status, exc.reason, [], close=True)
                    return
                if request is None:
                    return
                if request.upgrade and request.upgrade.strip().lower() != "h2c":
                    message = (
                        f"a switch to {request.upgrade[:40]!r} is not relayed where the proxy reads "
                        "requests (it could not screen what follows). fix: reach this host through a "
                        "rule without tls: terminate, over CONNECT (wss://, or a proxy-aware client)"
                    )
                    await down.refuse(501, message, [], close=True)
                    return
                try:
                    try:
                        hop = await route(request)
                    except (ValueError, UnicodeError) as exc:  # urlsplit, a port over 65535...
                        raise Refused(400, f"bad request target {request.target[:200]!r}: {exc}") from None
                    if up is not None and (up.key != hop.key or not up.reusable):
                        up.close()
                        up = None
                    if up is None:
                        up = Upstream(*await self._open_hop(sandbox, hop), key=hop.key)
                    else:
                        self._audit_hop(sandbox, hop, "over the kept-alive connection")
                    await up.send(request.method, hop.origin, hop.headers, request.body)
                    status, reason, headers = await up.response()
                except Refused as refused:
                    # Refusals are answered and the connection kept, but not for ever: a
                    # pipeline of refused requests would be a flood of audit entries.
                    refusals += 1
                    last = refusals >= MAX_REFUSALS_PER_CONNECTION
                    await down.refuse(
                        refused.status, refused.reason, [(RULE_HEADER, refused.rule or "-")], last
                    )
                    if last:
                        return
                    continue
                except (ConnectionError, OSError) as exc:
                    if up is not None:
                        up.close()
                        up = None
                    await down.refuse(502, f"the server failed: {exc}", [], close=True)
                    return
                body = up.body()
                if hop.masked:
                    headers = [
                        (k, _mask(v.encode("latin-1"), hop.masked).decode("latin-1")) for k, v in headers
                    ]
                    body = _masking(body, hop.masked)
                await down.respond(status, headers, body, reason)
                if not down.open:
                    return
        finally:
            down.release()
            if up is not None:
                up.close()

    async def _open_hop(self, sandbox: str, hop: Hop) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if hop.decision is None:  # inference.local
            route = self.inference
            assert route is not None
            try:
                opened = await asyncio.open_connection(route.host, route.port, limit=CHUNK)
            except OSError as exc:
                raise Refused(
                    502, f"the gateway's model router is unreachable: {exc}", INFERENCE_HOST
                ) from None
            self._audit_hop(sandbox, hop, "the gateway's model router")
            return opened
        host, port, tls = hop.key
        return await self._open(sandbox, hop.decision, host, port, hop.what, tls=tls)

    def _audit_hop(self, sandbox: str, hop: Hop, detail: str) -> None:
        rule = hop.decision.rule_name if hop.decision is not None else INFERENCE_HOST
        reason = f"{hop.decision.reason}; {detail}" if hop.decision is not None else detail
        self._audit(sandbox, "allowed", rule, hop.what, reason)

    async def _screen(
        self,
        sandbox: str,
        decision: NetDecision,
        request: http1.Request,
        path: str,
        query: str,
        what: str,
        encrypted: bool,
    ) -> tuple[str, list[tuple[str, str]]]:
        """L7 rules, then secrets: none may leave except the one this rule binds, which the
        proxy itself adds, and only over TLS it verifies (`encrypted`). Returns the path
        (normalised) and the headers to send on."""
        rule = decision.rule
        path, problem = normalise_path(path)
        if rule is not None and (rule.allow or rule.deny):
            override = next((k for k, _ in request.headers if k.lower() in METHOD_OVERRIDES), None)
            if override is not None:
                reason = f"{override} would make the server read another method than the rule saw"
                self._audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(400, reason, decision.rule_name)
            if problem:
                reason = f"the path {path[:200]!r} is ambiguous ({problem}); send it normalised"
                self._audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(400, reason, decision.rule_name)
            l7 = request_decision(rule, request.method, path, parse_qs(query, keep_blank_values=True))
            if l7.verdict != "allow":
                self._audit(sandbox, "denied", decision.rule_name, what, l7.reason)
                raise Refused(403, l7.reason, decision.rule_name)
        headers = request.headers
        if self.secrets is None:
            return path, headers
        await self._screen_request(sandbox, decision, what, request, headers)
        if rule is not None and rule.credentials:
            if not encrypted:
                reason = (
                    f"rule '{rule.name}' binds the credential '{rule.credentials}', which goes only over TLS "
                    "the proxy verifies, never in clear text. fix: use https://"
                )
                self._audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(403, reason, decision.rule_name)
            try:
                secret = self.secrets.get(rule.credentials)
            except SecretError as exc:
                self._audit(sandbox, "failed", decision.rule_name, what, str(exc))
                raise Refused(502, str(exc), decision.rule_name) from None
            # The proxy sets the credential's header itself (whatever the sandbox put there,
            # placeholder or not); nowhere else does a placeholder become the secret, or a
            # header the server echoes back would carry it into the sandbox.
            headers = [(k, v) for k, v in headers if k.lower() != secret.header.lower()]
            headers.append((secret.header, secret.header_value()))
        return path, headers

    def _injected(self, decision: NetDecision) -> tuple[bytes, ...]:
        rule = decision.rule
        if rule is None or not rule.credentials or self.secrets is None:
            return ()
        try:
            value = self.secrets.get(rule.credentials).value.encode()
        except SecretError:
            return ()
        return (value, base64.b64encode(value))

    def _in_host_name(self, host: str) -> bool:
        """Whether a host name carries a known secret, in any case (names are resolved
        case-blind, so DNS would carry it out). True, too, when the secret store cannot be
        read: the caller then takes the path that reports that."""
        if self.secrets is None:
            return False
        try:
            values = {name: value.lower() for name, value in self.secrets.values().items()}
        except (SecretError, OSError, ValueError):
            return True
        return find_secret(values, host.lower().encode()) is not None

    def _screen_host(self, sandbox: str, decision: NetDecision, what: str, host: str) -> None:
        if self._in_host_name(host):  # then refuse, and say why
            self._screen_target(sandbox, decision, what, host.encode(), fold_case=True)

    async def _screen_request(
        self,
        sandbox: str,
        decision: NetDecision,
        what: str,
        request: http1.Request,
        headers: list[tuple[str, str]],
    ) -> None:
        """No known secret in the target, the headers that go on, or the body. A big request
        is read on a worker thread: decoding megabytes of '%' takes seconds, which on the
        event loop would stall every sandbox and the gateway's API with it."""
        header_text = "\n".join(f"{k}: {v}" for k, v in headers).encode("latin-1")
        texts = (request.target.encode("latin-1"), header_text, request.body)
        if sum(map(len, texts)) <= SCREEN_ON_LOOP_BYTES:
            self._screen_target(sandbox, decision, what, *texts)
            return
        leaked = await asyncio.to_thread(self._leak, texts, False)
        self._refuse_leak(sandbox, decision, what, leaked)

    def _screen_target(
        self, sandbox: str, decision: NetDecision, what: str, *texts: bytes, fold_case: bool = False
    ) -> None:
        """Refuse (and audit) a request whose target, headers or body carry a known secret."""
        self._refuse_leak(sandbox, decision, what, self._leak(texts, fold_case))

    def _leak(self, texts: tuple[bytes, ...], fold_case: bool) -> str | Exception | None:
        """The secret the texts carry, the error that kept them from being read, or None."""
        if self.secrets is None:
            return None
        try:
            values = self.secrets.values()
            if fold_case:
                values = {name: value.lower() for name, value in values.items()}
            return find_secret(values, *texts)
        except (SecretError, OSError, ValueError) as exc:
            return exc

    def _refuse_leak(
        self, sandbox: str, decision: NetDecision, what: str, leaked: str | Exception | None
    ) -> None:
        if isinstance(leaked, Exception):
            self._audit(
                sandbox, "failed", decision.rule_name, what, f"the secret store is unreadable: {leaked}"
            )
            raise Refused(502, f"the secret store is unreadable: {leaked}", decision.rule_name)
        if leaked is not None:
            reason = f"the request carries the secret '{leaked}', which this endpoint is not bound to"
            self._audit(sandbox, "denied", decision.rule_name, what, f"exfiltration blocked: {reason}")
            raise Refused(403, reason, decision.rule_name)

    def _budget(self, sandbox: str) -> http1.BodyBudget:
        return self._budgets.setdefault(sandbox, http1.BodyBudget())

    def _audit(self, sandbox: str, outcome: str, rule: str, what: str, detail: str) -> None:
        if self.audit is not None:
            self.audit.record_soon(
                AuditEntry(
                    actor=f"sandbox:{sandbox}",
                    action="network",
                    outcome=outcome,
                    sandbox=sandbox,
                    argv=[what],
                    rule=rule,
                    detail=detail,
                    ts=time.time(),
                )
            )


async def _read_head(reader: asyncio.StreamReader) -> Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise Refused(431, f"request head larger than {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        return None
    return _parse_head(raw)


def _parse_head(raw: bytes) -> Head:
    """The head up to and including its blank line (anything after it is ignored)."""
    raw = raw[: raw.index(b"\r\n\r\n") + 4]
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise Refused(400, f"malformed request line {lines[0][:100]!r}")
    return Head(parts[0].upper(), parts[1], raw)


def _with_host(
    headers: list[tuple[str, str]], host: str, port: int, default_port: int
) -> list[tuple[str, str]]:
    """The Host the policy decided on, not the one the client wrote (which could route to
    another site behind the same address, with the bound credential)."""
    name = f"[{host}]" if ":" in host else host
    authority = name if port == default_port else f"{name}:{port}"
    return [(k, v) for k, v in headers if k.lower() != "host"] + [("Host", authority)]


def _origin(path: str, query: str) -> str:
    return path + (f"?{query}" if query else "")


def _split_host_port(target: str, default: int) -> tuple[str, int]:
    if target.startswith("["):  # [v6]:port
        host, _, rest = target[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    try:
        number = int(port) if port else default
    except ValueError:
        raise Refused(400, f"bad port in {target[:200]!r}") from None
    host = host.lower()
    if not 0 < number < 65536 or not HOST_NAME.fullmatch(host):
        raise Refused(400, f"{target[:200]!r} is not a host:port")
    return host, number


def _mask(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    """The same bytes with each secret overwritten by as many '*': lengths (and so a
    Content-Length) stay right."""
    for secret in secrets:
        if secret:
            data = data.replace(secret, b"*" * len(secret))
    return data


async def _masking(body: AsyncIterator[bytes], secrets: tuple[bytes, ...]) -> AsyncIterator[bytes]:
    """A streamed body with the secrets masked, also where one is split between chunks: the
    last len(longest) - 1 bytes wait for the next chunk."""
    keep = max(len(s) for s in secrets) - 1
    held = b""
    async for chunk in body:
        data = _mask(held + chunk, secrets)
        cut = max(len(data) - keep, 0)
        held = data[cut:]
        if cut:
            yield data[:cut]
    if held:
        yield _mask(held, secrets)


def _refusal(refused: Refused) -> bytes:
    body = f"HermitCrab egress: {refused.reason}\n".encode()
    head = (
        f"HTTP/1.1 {refused.status} {http1.REASONS.get(refused.status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"{RULE_HEADER}: {refused.rule or '-'}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _refuse(writer: asyncio.StreamWriter, refused: Refused) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(_refusal(refused))
        await writer.drain()
