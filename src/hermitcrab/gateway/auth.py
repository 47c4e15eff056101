"""Who may talk to the gateway, as a wrapper around the app.

- Every request's Host must be one of the gateway's own names: a page on another site
  whose name an attacker points at 127.0.0.1 (DNS rebinding) is refused before anything.
- API clients send the token as `Authorization: Bearer`.
- The dashboard exchanges the token, once, for a session cookie (`POST /api/login`, the
  token in the body): HttpOnly (no script reads it), SameSite=Strict (no other site's page
  sends it). The token never travels in a URL. A request the cookie carries must come from
  the gateway's own origin when it changes something, and so must every WebSocket, whatever
  authenticates it: a cross-site page gets nothing from either.
- Every response carries a strict Content-Security-Policy: the dashboard runs only its own
  scripts and styles, and no other site may frame it.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterable
from hashlib import sha256
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("hermitcrab.auth")

COOKIE = "hermitcrab_session"
SESSION_SECONDS = 30 * 24 * 3600  # then the token is asked for again
OPEN_PATHS = frozenset({"/healthz", "/", "/api/login", "/api/logout"})
# The dashboard's own scripts and styles (no data in them), and signed webhooks (their
# signature is their auth: channels/webhook.py).
OPEN_PREFIXES = ("/static/", "/hooks/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def host_names(bind: str, extra: Iterable[str]) -> frozenset[str]:
    """The names a request's Host may carry: loopback's, the bound address (unless a
    wildcard), and those configured (gateway.allowed_hosts: a LAN or Tailscale name)."""
    names = set(LOOPBACK_NAMES) | {name.lower() for name in extra}
    if bind not in ("0.0.0.0", "::", ""):
        names.add(bind.lower())
    return frozenset(names)


def session_cookie(token: bytes, now: float | None = None) -> str:
    """A cookie value: when it was issued and a MAC of that under the token. It needs no
    server-side state, survives a restart, ends after SESSION_SECONDS, and every one ends
    when the token is replaced."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(token, issued)}"


def _mac(token: bytes, issued: int) -> str:
    return hmac.new(token, f"dashboard-session:{issued}".encode(), sha256).hexdigest()


def cookie_valid(token: bytes, value: str, now: float | None = None) -> bool:
    issued_text, _, mac = value.partition(".")
    if not issued_text.isdigit() or not mac:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    return 0 <= age <= SESSION_SECONDS and hmac.compare_digest(mac, _mac(token, issued))


class TokenAuth:
    def __init__(self, app: Any, token: str, hosts: frozenset[str]) -> None:
        self.app = app
        self._token = token.encode()
        self.hosts = hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            send = _with_headers(send)
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, kind, message = refusal
        client = scope.get("client") or ("?", 0)
        log.warning(
            "%s request refused",
            kind,
            extra={
                "path": scope["path"],
                "client": f"{client[0]}:{client[1]}",
                "type": scope["type"],
            },
        )
        if scope["type"] == "websocket":
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 4000 + status, "reason": kind})
            return
        body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
        extra = [(b"www-authenticate", b'Bearer realm="hermitcrab"')] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: dict[str, Any], headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        host = _name_of(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.hosts:
            return (
                421,
                "unknown_host",
                f"this gateway does not answer to the name {host!r}. fix: use 127.0.0.1 or localhost, "
                "or add the name to gateway.allowed_hosts",
            )
        origin = headers.get(b"origin")
        same_origin = origin is not None and self._own_origin(origin.decode("latin-1"), headers)
        if scope["type"] == "websocket" and origin is not None and not same_origin:
            return 403, "cross_origin", "a WebSocket from another site's page is refused"
        path = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and origin and not same_origin:
                return 403, "cross_origin", "a request from another site's page is refused"
            return None
        bearer = headers.get(b"authorization", b"")
        if bearer[:7].lower() == b"bearer ":
            if hmac.compare_digest(bearer[7:].strip(), self._token):
                return None
            return 401, "unauthorized", _UNAUTHORIZED
        cookie = _cookie(headers, COOKIE)
        if cookie is None or not cookie_valid(self._token, cookie):
            return 401, "unauthorized", _UNAUTHORIZED
        # A cookie is sent by the browser on its own: what it authenticates must be asked
        # for by the gateway's own page. SameSite=Strict says so already; this says it again.
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and not same_origin:
            return (
                403,
                "cross_origin",
                "a change made with the session cookie must come from the dashboard",
            )
        return None

    def _own_origin(self, origin: str, headers: dict[bytes, bytes]) -> bool:
        parts = urlsplit(origin)
        host = headers.get(b"host", b"").decode("latin-1").lower()
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host


_UNAUTHORIZED = (
    "missing or wrong bearer token or session. fix: send 'Authorization: Bearer <token>' with the token from "
    "$HERMITCRAB_HOME/gateway.token (the dashboard: open the address `hermitcrab dashboard` prints)"
)


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie" and name in found:
            found[name] += b"; " + value
        else:
            found.setdefault(name, value)
    return found


def _name_of(host: str) -> str:
    """The name in a Host header, without its port ([::1]:80 gives ::1)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except Exception:  # a malformed Cookie header authenticates nothing
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _with_headers(send: Any) -> Any:
    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending
