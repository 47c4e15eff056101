"""The egress proxy: each sandbox's one door out, under its network policy.

A connection through a sandbox's door goes, step by step:

1. arrival (here): counted against network.max_connections, its first request head read
   on the event loop and parsed once (heads.py);
2. decision (here): the sandbox's network policy as it is *now* (rules reload live), a
   person asked where the rule says `ask` (the approval inbox), recorded in the audit log
   (ledger.py) before anything is opened;
3. then one of: a tunnel for an allowed CONNECT, dialed and relayed by splice(2) on a
   thread of the proxy's own (tunnel.py); forwarding of plain http://, terminated TLS, or
   inference.local, where each request is read, decided again and screened (forward.py,
   screen.py).

The proxy resolves a name itself, once, and connects to that very address, so a name
cannot be re-pointed between the check and the connection, and no DNS leaves the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hermitcrab.approvals import Approvals
from hermitcrab.egress import http1, splice
from hermitcrab.egress.ca import SandboxCA
from hermitcrab.egress.door import Door, streams
from hermitcrab.egress.forward import INFERENCE_HOST, Forwarder, InferenceRoute, NetworkSource
from hermitcrab.egress.heads import (
    MAX_HEAD,
    Head,
    Refused,
    parse_head,
    read_head,
    refusal,
    refuse,
    split_host_port,
)
from hermitcrab.egress.http1 import Downstream
from hermitcrab.egress.ledger import NetAudit, OpenCounts, Release
from hermitcrab.egress.screen import Screen
from hermitcrab.egress.secrets import SecretStore
from hermitcrab.egress.tunnel import Dialer, Tunnels
from hermitcrab.policy.network import NetDecision, connection_decision
from hermitcrab.policy.schema import NetworkPolicy
from hermitcrab.store import AuditLog

__all__ = ["INFERENCE_HOST", "EgressProxy", "InferenceRoute", "Refused"]

log = logging.getLogger("hermitcrab.egress")

HEAD_TIMEOUT_S = 30.0


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
        self._audit = NetAudit(audit)
        self._screen = Screen(secrets, self._audit)
        # How the proxy checks the servers it terminates TLS for: the system's roots by default.
        self._dialer = Dialer(self._audit, upstream_tls or ssl.create_default_context())
        self._tunnels = Tunnels(self._dialer)  # threads of our own, stopped in close_all()
        self._forwarder = Forwarder(self._audit, self._screen, self._dialer, self._decide, inference)
        self._doors: dict[str, Door] = {}
        self._networks: dict[str, NetworkSource] = {}
        self._budgets: dict[str, http1.BodyBudget] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = OpenCounts()
        self._cas: dict[str, SandboxCA] = {}

    @property
    def inference(self) -> InferenceRoute | None:
        """Where inference.local leads (set once the gateway's API listens)."""
        return self._forwarder.inference

    @inference.setter
    def inference(self, route: InferenceRoute | None) -> None:
        self._forwarder.inference = route

    @property
    def upstream_tls(self) -> ssl.SSLContext:
        return self._dialer.upstream_tls

    @property
    def _pumps(self) -> splice.Pumps:
        return self._tunnels.pumps

    @property
    def _dials(self) -> ThreadPoolExecutor:  # the dial threads, for tests that watch them end
        return self._dialer.pool

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
        self._tunnels.close()
        self._dialer.close()

    # --- 1. arrival

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
            conn.send(refusal(refused))
        conn.close()
        # One audit entry a second at most: a flood must not flood the log too.
        count = self._counts.refused(sandbox)
        if count:
            self._audit(sandbox, "denied", refused.rule, "connection", f"{refused.reason} ({count} refused)")

    def _dispatch(
        self, sandbox: str, network: NetworkSource, conn: socket.socket, raw: bytes, release: Release
    ) -> None:
        """The hot path: a CONNECT that the policy allows outright needs nothing more from
        the event loop, so a tunnel thread dials, answers and relays it. Everything else
        (approvals, terminated TLS, plain HTTP, refusals) takes the full path."""
        head: Head | None = None
        try:
            head = parse_head(raw) if b"\r\n\r\n" in raw else None
            if head is not None and head.method == "CONNECT":
                host, port = split_host_port(head.target, 443)
                decision = connection_decision(network(), host, port)
                rule = decision.rule
                # A plain tunnel: the rule neither terminates TLS nor checks requests (L7).
                plain = rule is None or (rule.tls != "terminate" and not rule.allow and not rule.deny)
                if decision.verdict == "allow" and plain and not self._screen.in_host_name(host):
                    early = raw[len(head.raw) :]
                    self._tunnels.start(sandbox, decision, host, port, conn, early, release)
                    return
        except Exception:
            head = None  # the full path parses and decides again, and reports what went wrong
        serving = self._serve_conn(sandbox, network, conn, raw, head, release)
        task = asyncio.get_running_loop().create_task(serving)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_conn(
        self,
        sandbox: str,
        network: NetworkSource,
        conn: socket.socket,
        raw: bytes,
        head: Head | None,
        release: Release,
    ) -> None:
        try:
            try:
                reader, writer = await streams(conn, raw, MAX_HEAD)
            except OSError:
                conn.close()
                return
            await self._serve(sandbox, network, reader, writer, head)
        finally:
            release()

    async def _serve(
        self,
        sandbox: str,
        network: NetworkSource,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parsed: Head | None = None,
    ) -> None:
        try:
            head = await read_head(reader, parsed)
            if head is None:
                return
            if head.method == "CONNECT":
                await self._connect(sandbox, network, head, reader, writer)
            else:
                down = Downstream(reader, writer, self._budget(sandbox), head.raw)
                await self._forwarder.forward(sandbox, network, down)
        except Refused as refused:
            await refuse(writer, refused)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("egress proxy failed", extra={"sandbox": sandbox})
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # --- 2. decision

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

    # --- 3. the CONNECT that took the full path

    async def _connect(
        self,
        sandbox: str,
        network: NetworkSource,
        head: Head,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, port = split_host_port(head.target, 443)
        what = f"CONNECT {host}:{port}"
        decision = await self._decide(sandbox, network(), host, port, what)
        self._screen.host(sandbox, decision, what, host)
        rule = decision.rule
        if rule is not None and rule.tls == "terminate":
            ca = self._cas.get(sandbox)
            if ca is None:
                raise Refused(502, f"rule '{decision.rule_name}' terminates TLS, but this sandbox has no CA")
            await self._forwarder.terminate(
                sandbox, network, decision, host, port, ca, reader, writer, self._budget(sandbox)
            )
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
        await self._tunnels.relay(sandbox, decision, host, port, splice.detach(writer), early)

    def _budget(self, sandbox: str) -> http1.BodyBudget:
        return self._budgets.setdefault(sandbox, http1.BodyBudget())
