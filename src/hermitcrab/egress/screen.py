"""What may leave in a request, and what may come back in a response.

A request that passes its connection's decision is held to its rule's L7 checks (method,
path, query), then screened for every known secret (target, headers, body), and gets the
one credential its rule binds, added here and only over TLS the proxy verifies. A response
from a server the credential went to has it masked, in every form a server may echo it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

from hermitcrab.egress import http1
from hermitcrab.egress.heads import Refused
from hermitcrab.egress.ledger import NetAudit
from hermitcrab.egress.secrets import SecretError, SecretStore, find_secret
from hermitcrab.policy.network import NetDecision, normalise_path, request_decision

# Headers some frameworks read as the request's real method: under L7 rules, never passed.
METHOD_OVERRIDES = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
# Requests up to this size are screened for secrets on the event loop (it takes
# microseconds); larger ones on a worker thread.
SCREEN_ON_LOOP_BYTES = 64 * 1024

Headers = list[tuple[str, str]]


class Screen:
    def __init__(self, secrets: SecretStore | None, audit: NetAudit) -> None:
        self.secrets = secrets
        self.audit = audit

    async def request(
        self,
        sandbox: str,
        decision: NetDecision,
        request: http1.Request,
        path: str,
        query: str,
        what: str,
        encrypted: bool,
    ) -> tuple[str, Headers]:
        """L7 rules, then secrets: none may leave except the one this rule binds, which the
        proxy itself adds, and only over TLS it verifies (`encrypted`). Returns the path
        (normalised) and the headers to send on."""
        rule = decision.rule
        path, problem = normalise_path(path)
        if rule is not None and (rule.allow or rule.deny):
            override = next((k for k, _ in request.headers if k.lower() in METHOD_OVERRIDES), None)
            if override is not None:
                reason = f"{override} would make the server read another method than the rule saw"
                self.audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(400, reason, decision.rule_name)
            if problem:
                reason = f"the path {path[:200]!r} is ambiguous ({problem}); send it normalised"
                self.audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(400, reason, decision.rule_name)
            l7 = request_decision(rule, request.method, path, parse_qs(query, keep_blank_values=True))
            if l7.verdict != "allow":
                self.audit(sandbox, "denied", decision.rule_name, what, l7.reason)
                raise Refused(403, l7.reason, decision.rule_name)
        headers = request.headers
        if self.secrets is None:
            return path, headers
        await self.contents(sandbox, decision, what, request, headers)
        if rule is not None and rule.credentials:
            if not encrypted:
                reason = (
                    f"rule '{rule.name}' binds the credential '{rule.credentials}', which goes only over TLS "
                    "the proxy verifies, never in clear text. fix: use https://"
                )
                self.audit(sandbox, "denied", decision.rule_name, what, reason)
                raise Refused(403, reason, decision.rule_name)
            try:
                secret = self.secrets.get(rule.credentials)
            except SecretError as exc:
                self.audit(sandbox, "failed", decision.rule_name, what, str(exc))
                raise Refused(502, str(exc), decision.rule_name) from None
            # The proxy sets the credential's header itself (whatever the sandbox put there,
            # placeholder or not); nowhere else does a placeholder become the secret, or a
            # header the server echoes back would carry it into the sandbox.
            headers = [(k, v) for k, v in headers if k.lower() != secret.header.lower()]
            headers.append((secret.header, secret.header_value()))
        return path, headers

    async def contents(
        self, sandbox: str, decision: NetDecision, what: str, request: http1.Request, headers: Headers
    ) -> None:
        """No known secret in the target, the headers that go on, or the body. A big request
        is read on a worker thread: decoding megabytes of '%' takes seconds, which on the
        event loop would stall every sandbox and the gateway's API with it."""
        header_text = "\n".join(f"{k}: {v}" for k, v in headers).encode("latin-1")
        texts = (request.target.encode("latin-1"), header_text, request.body)
        if sum(map(len, texts)) <= SCREEN_ON_LOOP_BYTES:
            self.texts(sandbox, decision, what, *texts)
            return
        leaked = await asyncio.to_thread(self._leak, texts, False)
        self._refuse_leak(sandbox, decision, what, leaked)

    def host(self, sandbox: str, decision: NetDecision, what: str, host: str) -> None:
        """Refuse a host name that carries a secret (DNS would carry it out)."""
        if self.in_host_name(host):  # then refuse, and say why
            self.texts(sandbox, decision, what, host.encode(), fold_case=True)

    def in_host_name(self, host: str) -> bool:
        """Whether a host name carries a known secret, in any case (names are resolved
        case-blind). True, too, when the secret store cannot be read: the caller then takes
        the path that reports that."""
        if self.secrets is None:
            return False
        try:
            values = {name: value.lower() for name, value in self.secrets.values().items()}
        except (SecretError, OSError, ValueError):
            return True
        return find_secret(values, host.lower().encode()) is not None

    def texts(
        self, sandbox: str, decision: NetDecision, what: str, *texts: bytes, fold_case: bool = False
    ) -> None:
        """Refuse (and audit) a request whose texts carry a known secret."""
        self._refuse_leak(sandbox, decision, what, self._leak(texts, fold_case))

    def injected(self, decision: NetDecision) -> tuple[bytes, ...]:
        """The credential this decision's rule adds, as a response could echo it back."""
        rule = decision.rule
        if rule is None or not rule.credentials or self.secrets is None:
            return ()
        try:
            value = self.secrets.get(rule.credentials).value.encode()
        except SecretError:
            return ()
        return (value, base64.b64encode(value))

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
            self.audit(
                sandbox, "failed", decision.rule_name, what, f"the secret store is unreadable: {leaked}"
            )
            raise Refused(502, f"the secret store is unreadable: {leaked}", decision.rule_name)
        if leaked is not None:
            reason = f"the request carries the secret '{leaked}', which this endpoint is not bound to"
            self.audit(sandbox, "denied", decision.rule_name, what, f"exfiltration blocked: {reason}")
            raise Refused(403, reason, decision.rule_name)


def mask(data: bytes, secrets: tuple[bytes, ...]) -> bytes:
    """The same bytes with each secret overwritten by as many '*': lengths (and so a
    Content-Length) stay right."""
    for secret in secrets:
        if secret:
            data = data.replace(secret, b"*" * len(secret))
    return data


async def masking(body: AsyncIterator[bytes], secrets: tuple[bytes, ...]) -> AsyncIterator[bytes]:
    """A streamed body with the secrets masked, also where one is split between chunks: the
    last len(longest) - 1 bytes wait for the next chunk."""
    keep = max(len(s) for s in secrets) - 1
    held = b""
    async for chunk in body:
        data = mask(held + chunk, secrets)
        cut = max(len(data) - keep, 0)
        held = data[cut:]
        if cut:
            yield data[:cut]
    if held:
        yield mask(held, secrets)
