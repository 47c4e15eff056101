"""Requests the proxy reads: plain http:// forwarding, terminated TLS, and inference.local.

Each request on a kept-alive connection is routed alone (decided by the policy as it is
now, screened), sent on over a server connection kept for the next request to the same
place, and answered; a refused request is answered and the next one read.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hermitcrab.egress import SANDBOX_HEADER, http1
from hermitcrab.egress.ca import SandboxCA
from hermitcrab.egress.heads import ESTABLISHED, HOST_NAME, RULE_HEADER, Refused, origin, with_host
from hermitcrab.egress.http1 import Downstream, Upstream
from hermitcrab.egress.ledger import NetAudit
from hermitcrab.egress.screen import Screen, mask, masking
from hermitcrab.egress.tunnel import Dialer
from hermitcrab.policy.network import NetDecision, connection_decision
from hermitcrab.policy.schema import NetworkPolicy

NetworkSource = Callable[[], NetworkPolicy]
Decide = Callable[[str, NetworkPolicy, str, int, str], Awaitable[NetDecision]]
MAX_REFUSALS_PER_CONNECTION = 16  # then the connection is closed
INFERENCE_HOST = "inference.local"
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/models"})


@dataclass(frozen=True)
class InferenceRoute:
    """Where inference.local leads: the gateway's own OpenAI-compatible API."""

    host: str
    port: int
    token: Callable[[], str]
    # What the gateway's API would take (gateway.max_request_bytes); larger is refused here,
    # before it costs a screen.
    max_body_bytes: int = 1024 * 1024
    # The gateway's TLS, where it has its own (its certificate pinned); None: plain HTTP.
    tls: ssl.SSLContext | None = None


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


Route = Callable[[http1.Request], Awaitable[Hop]]


class Forwarder:
    def __init__(
        self,
        audit: NetAudit,
        screen: Screen,
        dialer: Dialer,
        decide: Decide,
        inference: InferenceRoute | None,
    ) -> None:
        self.audit = audit
        self.screen = screen
        self.dialer = dialer
        self.decide = decide
        self.inference = inference

    async def forward(self, sandbox: str, network: NetworkSource, down: Downstream) -> None:
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
            decision = await self.decide(sandbox, network(), host, port, what)
            self.screen.host(sandbox, decision, what, host)
            path, headers = await self.screen.request(
                sandbox, decision, request, path, url.query, what, encrypted=False
            )
            headers = with_host(headers, host, port, 80)
            return Hop((host, port, False), what, decision, origin(path, url.query), headers)

        await self._exchanges(sandbox, down, route)

    async def terminate(
        self,
        sandbox: str,
        network: NetworkSource,
        decision: NetDecision,
        host: str,
        port: int,
        ca: SandboxCA,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        budget: http1.BodyBudget,
    ) -> None:
        """Speak TLS to the sandbox with a certificate from its CA, and see each request
        inside: decided by the L7 rules, screened for secrets, sent on over the proxy's own
        TLS connection to the real server."""
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
            path, headers = await self.screen.request(
                sandbox, current, request, url.path or "/", url.query, what, encrypted=True
            )
            headers = with_host(headers, host, port, 443)
            masked = self.screen.injected(current)
            return Hop((host, port, True), what, current, origin(path, url.query), headers, masked)

        await self._exchanges(sandbox, Downstream(reader, writer, budget), route)

    def _still_allowed(
        self, sandbox: str, network: NetworkPolicy, decided: NetDecision, host: str, port: int, what: str
    ) -> NetDecision:
        """A kept-alive terminated connection outlives policy changes: each request is held
        to the rules as they are now (its L7 rules and credential too)."""
        now = connection_decision(network, host, port)
        rule = now.rule
        if now.verdict == "deny" or rule is None or rule.name != decided.rule_name or rule.tls != "terminate":
            reason = f"the policy for {host}:{port} changed under this connection ({now.reason}); reconnect"
            self.audit(sandbox, "denied", now.rule_name, what, reason)
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
            self.audit(sandbox, "denied", INFERENCE_HOST, what, f"{path} is not a model API path")
            raise Refused(
                403, f"inference.local serves only {', '.join(sorted(INFERENCE_PATHS))}", INFERENCE_HOST
            )
        if len(request.body) > route.max_body_bytes:
            self.audit(sandbox, "denied", INFERENCE_HOST, what, f"a body of {len(request.body)} bytes")
            raise Refused(
                413, f"inference.local takes bodies of at most {route.max_body_bytes} bytes", INFERENCE_HOST
            )
        dropped = {"authorization", "host", SANDBOX_HEADER.lower()}
        headers = [(k, v) for k, v in request.headers if k.lower() not in dropped]
        # The model may be a remote provider's: no secret rides out in a prompt either.
        inference = NetDecision("allow", None, "the gateway's model router")
        await self.screen.contents(sandbox, inference, what, request, headers)
        headers += [
            ("Host", f"{route.host}:{route.port}"),
            ("Authorization", f"Bearer {route.token()}"),
            (SANDBOX_HEADER, sandbox),  # whose model route to take; only the proxy sets it
        ]
        return Hop(INFERENCE_HOST, what, None, origin(path, query), headers)

    async def _exchanges(self, sandbox: str, down: Downstream, route: Route) -> None:
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
                        (k, mask(v.encode("latin-1"), hop.masked).decode("latin-1")) for k, v in headers
                    ]
                    body = masking(body, hop.masked)
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
                opened = await asyncio.open_connection(
                    route.host, route.port, limit=http1.CHUNK, ssl=route.tls
                )
            except OSError as exc:
                raise Refused(
                    502, f"the gateway's model router is unreachable: {exc}", INFERENCE_HOST
                ) from None
            self._audit_hop(sandbox, hop, "the gateway's model router")
            return opened
        host, port, tls = hop.key
        return await self.dialer.open(sandbox, hop.decision, host, port, hop.what, tls=tls)

    def _audit_hop(self, sandbox: str, hop: Hop, detail: str) -> None:
        rule = hop.decision.rule_name if hop.decision is not None else INFERENCE_HOST
        reason = f"{hop.decision.reason}; {detail}" if hop.decision is not None else detail
        self.audit(sandbox, "allowed", rule, hop.what, reason)
