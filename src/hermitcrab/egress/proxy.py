"""The egress proxy: HTTP CONNECT and plain-HTTP forwarding, one Unix socket per sandbox.

Every connection is decided by the sandbox's network policy as it is *now* (rules reload
live), recorded in the audit log, and only then opened. The proxy resolves the name
itself, once, and connects to that very address, so a name cannot be re-pointed between
the check and the connection, and no DNS ever leaves the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hermitcrab.egress import splice
from hermitcrab.egress.approvals import Approvals
from hermitcrab.egress.ca import SandboxCA
from hermitcrab.egress.secrets import SecretError, SecretStore, find_secret
from hermitcrab.policy.network import (
    NetDecision,
    address_problem,
    connection_decision,
    credential_placeholder,
    request_decision,
)
from hermitcrab.policy.schema import NetworkPolicy
from hermitcrab.store import AuditEntry, AuditLog

log = logging.getLogger("hermitcrab.egress")

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024  # bodies the proxy sees are screened whole
CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 10.0
HOP_HEADERS = frozenset({"proxy-connection", "proxy-authorization", "connection", "keep-alive"})

NetworkSource = Callable[[], NetworkPolicy]
INFERENCE_HOST = "inference.local"
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/models"})


@dataclass(frozen=True)
class InferenceRoute:
    """Where inference.local leads: the gateway's own OpenAI-compatible API."""

    host: str
    port: int
    token: Callable[[], str]


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes


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
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self._cas: dict[str, SandboxCA] = {}
        self.inference = inference

    def ca(self, sandbox: str, folder: Path) -> SandboxCA:
        """The sandbox's CA (made on first use), for the TLS this proxy terminates."""
        ca = self._cas.get(sandbox)
        if ca is None:
            ca = self._cas[sandbox] = SandboxCA(folder, sandbox)
        return ca

    async def listen(self, sandbox: str, path: Path, network: NetworkSource) -> None:
        """Serve one sandbox on a Unix socket (bound into it as its only way out)."""
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(
            lambda r, w: self._serve(sandbox, network, r, w), path=str(path), limit=MAX_HEAD
        )
        path.chmod(0o666)  # the sandbox's uid connects; the folder around it is ours alone
        self._servers[sandbox] = server

    async def close(self, sandbox: str) -> None:
        server = self._servers.pop(sandbox, None)
        self._cas.pop(sandbox, None)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

    async def close_all(self) -> None:
        for sandbox in list(self._servers):
            await self.close(sandbox)

    async def _serve(
        self, sandbox: str, network: NetworkSource, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            if request.method == "CONNECT":
                await self._connect(sandbox, network(), request, reader, writer)
            else:
                await self._forward(sandbox, network(), request, reader, writer)
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
            decision = NetDecision("allow", decision.rule, f"approved by a person (approval {approval.id})")
        if decision.verdict != "allow":
            self._audit(sandbox, "denied", decision.rule_name, what, decision.reason)
            raise Refused(
                403,
                f"{decision.reason}. fix: add a network rule for {host}:{port} to the policy "
                "(`hermitcrab policy set FILE`)",
                decision.rule_name,
            )
        return decision

    async def _open(
        self, sandbox: str, decision: NetDecision, host: str, port: int, what: str, tls: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self._audit(sandbox, "failed", decision.rule_name, what, f"cannot resolve {host}: {exc}")
            raise Refused(502, f"cannot resolve {host}: {exc.strerror}", decision.rule_name) from None
        problems = []
        for family, _, _, _, address in infos:
            ip = address[0]
            problem = address_problem(ip, decision.rule)
            if problem:
                problems.append(problem)
                continue
            try:
                tls_args = {"ssl": self.upstream_tls, "server_hostname": host} if tls else {}
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(ip, port, family=family, limit=CHUNK, **tls_args),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                problems.append(f"{ip}: {exc}")
                continue
            self._audit(sandbox, "allowed", decision.rule_name, what, f"{decision.reason}; connected to {ip}")
            return reader, writer
        reason = "; ".join(problems) or f"no address for {host}"
        self._audit(sandbox, "denied", decision.rule_name, what, reason)
        raise Refused(403 if any("only a rule" in p for p in problems) else 502, reason, decision.rule_name)

    async def _connect(
        self,
        sandbox: str,
        network: NetworkPolicy,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, port = _split_host_port(request.target, 443)
        what = f"CONNECT {host}:{port}"
        decision = await self._decide(sandbox, network, host, port, what)
        if decision.rule is not None and decision.rule.tls == "terminate":
            await self._terminate(sandbox, decision, host, port, reader, writer)
            return
        up_reader, up_writer = await self._open(sandbox, decision, host, port, what)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        if reader._buffer or up_reader._buffer:  # bytes already read must go through here
            await _splice(reader, writer, up_reader, up_writer)
            return
        await splice.relay(splice.detach(writer), splice.detach(up_writer))

    async def _terminate(
        self,
        sandbox: str,
        decision: NetDecision,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Speak TLS to the sandbox with a certificate from its CA, see the request, decide
        it (L7 rules, secrets), then make our own TLS connection to the real server."""
        ca = self._cas.get(sandbox)
        if ca is None:
            raise Refused(502, f"rule '{decision.rule_name}' terminates TLS, but this sandbox has no CA")
        context = await asyncio.to_thread(ca.server_context, host)
        # Stop reading before saying yes: the client's TLS hello must reach the TLS layer,
        # not the plain-text buffer (start_tls resumes reading once it is in place).
        writer.transport.pause_reading()
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.start_tls(context)
        request = await _read_request(reader)
        if request is None:
            return
        url = urlsplit(request.target)
        path = url.path or "/"
        what = f"{request.method} https://{host}:{port}{path}"
        try:
            body = await _read_body(reader, request)
            headers = self._screen(sandbox, decision, request, path, url.query, body, what)
            up_reader, up_writer = await self._open(sandbox, decision, host, port, what, tls=True)
        except Refused as refused:
            await _refuse(writer, refused)
            return
        await _send_on(request, path, url.query, headers, body, up_reader, up_writer, writer)

    async def _inference(
        self,
        sandbox: str,
        request: Request,
        path: str,
        query: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        what: str,
    ) -> None:
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
        body = await _read_body(reader, request)
        headers = [
            (k, v) for k, v in request.headers if k.lower() not in HOP_HEADERS | {"authorization", "host"}
        ]
        headers += [("Host", f"{route.host}:{route.port}"), ("Authorization", f"Bearer {route.token()}")]
        try:
            up_reader, up_writer = await asyncio.open_connection(route.host, route.port, limit=CHUNK)
        except OSError as exc:
            raise Refused(502, f"the gateway's model router is unreachable: {exc}", INFERENCE_HOST) from None
        self._audit(sandbox, "allowed", INFERENCE_HOST, what, "the gateway's model router")
        await _send_on(request, path, query, headers, body, up_reader, up_writer, writer)

    def _screen(
        self,
        sandbox: str,
        decision: NetDecision,
        request: Request,
        path: str,
        query: str,
        body: bytes,
        what: str,
    ) -> list[tuple[str, str]]:
        """L7 rules, then secrets: none may leave except the one this rule binds, which the
        proxy itself adds. Returns the headers to send on."""
        rule = decision.rule
        if rule is not None and (rule.allow or rule.deny):
            l7 = request_decision(rule, request.method, path, parse_qs(query))
            if l7.verdict != "allow":
                self._audit(sandbox, "denied", decision.rule_name, what, l7.reason)
                raise Refused(403, l7.reason, decision.rule_name)
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_HEADERS]
        if self.secrets is None:
            return headers
        header_text = "\n".join(f"{k}: {v}" for k, v in headers).encode("latin-1")
        leaked = find_secret(self.secrets.values(), request.target.encode("latin-1"), header_text, body)
        if leaked is not None:
            reason = f"the request carries the secret '{leaked}', which this endpoint is not bound to"
            self._audit(sandbox, "denied", decision.rule_name, what, f"exfiltration blocked: {reason}")
            raise Refused(403, reason, decision.rule_name)
        if rule is not None and rule.credentials:
            try:
                secret = self.secrets.get(rule.credentials)
            except SecretError as exc:
                self._audit(sandbox, "failed", decision.rule_name, what, str(exc))
                raise Refused(502, str(exc), decision.rule_name) from None
            placeholder = credential_placeholder(rule.credentials)
            headers = [
                (k, v.replace(placeholder, secret.value))
                for k, v in headers
                if k.lower() != secret.header.lower()
            ]
            headers.append((secret.header, secret.header_value()))
        return headers

    async def _forward(
        self,
        sandbox: str,
        network: NetworkPolicy,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        url = urlsplit(request.target)
        if url.scheme != "http" or not url.hostname:
            raise Refused(
                400, f"the proxy forwards absolute http:// URLs (and CONNECT), not {request.target!r}"
            )
        host, port = url.hostname.lower(), url.port or 80
        path = url.path or "/"
        what = f"{request.method} http://{host}:{port}{path}"
        if host == INFERENCE_HOST:
            await self._inference(sandbox, request, path, url.query, reader, writer, what)
            return
        decision = await self._decide(sandbox, network, host, port, what)
        body = await _read_body(reader, request)
        headers = self._screen(sandbox, decision, request, path, url.query, body, what)
        up_reader, up_writer = await self._open(sandbox, decision, host, port, what)
        await _send_on(request, path, url.query, headers, body, up_reader, up_writer, writer)

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


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise Refused(431, f"request head larger than {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        return None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise Refused(400, f"malformed request line {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return Request(parts[0].upper(), parts[1], parts[2], headers, raw)


async def _read_body(reader: asyncio.StreamReader, request: Request) -> bytes:
    """The request's body, read whole so that it can be screened for secrets."""
    fields = {k.lower(): v for k, v in request.headers}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        raise Refused(411, "chunked request bodies are not supported here; send a Content-Length")
    try:
        length = int(fields.get("content-length", "0"))
    except ValueError:
        raise Refused(400, "bad Content-Length") from None
    if length > MAX_BODY:
        raise Refused(413, f"request body over {MAX_BODY} bytes")
    return await reader.readexactly(length) if length else b""


async def _send_on(
    request: Request,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    writer: asyncio.StreamWriter,
) -> None:
    """One request upstream (Connection: close), then the whole response back."""
    origin = path + (f"?{query}" if query else "")
    head = [f"{request.method} {origin} {request.version}", *(f"{k}: {v}" for k, v in headers)]
    head.append("Connection: close")
    up_writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    try:
        await up_writer.drain()
        await _pipe(up_reader, writer)
    finally:
        up_writer.close()


def _split_host_port(target: str, default: int) -> tuple[str, int]:
    if target.startswith("["):  # [v6]:port
        host, _, rest = target[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    try:
        return host.lower(), int(port) if port else default
    except ValueError:
        raise Refused(400, f"bad port in {target!r}") from None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _splice(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_pipe(a_reader, b_writer), _pipe(b_reader, a_writer))
    finally:
        b_writer.close()


async def _refuse(writer: asyncio.StreamWriter, refused: Refused) -> None:
    reasons = {
        400: "Bad Request",
        403: "Forbidden",
        411: "Length Required",
        413: "Content Too Large",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }
    body = f"HermitCrab egress: {refused.reason}\n".encode()
    head = (
        f"HTTP/1.1 {refused.status} {reasons.get(refused.status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"X-HermitCrab-Rule: {refused.rule or '-'}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(ConnectionError):
        writer.write(head.encode() + body)
        await writer.drain()
