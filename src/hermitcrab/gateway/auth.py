"""Bearer-token auth for every route but /healthz, as a wrapper around the app."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger("hermitcrab.auth")

OPEN_PATHS = frozenset({"/healthz", "/"})  # "/" is the dashboard page: no data in it


class TokenAuth:
    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._allowed(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        log.warning(
            "unauthorized request refused",
            extra={"path": scope["path"], "client": f"{client[0]}:{client[1]}", "type": scope["type"]},
        )
        if scope["type"] == "websocket":
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})
            return
        body = json.dumps(
            {
                "error": {
                    "message": "missing or wrong bearer token. fix: send 'Authorization: Bearer <token>' "
                    "with the token from $HERMITCRAB_HOME/gateway.token",
                    "type": "unauthorized",
                    "code": 401,
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="hermitcrab"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:].strip(), self._token)
        if scope["type"] == "websocket":
            # Browsers cannot set headers on a WebSocket; they pass ?token= instead.
            query = parse_qs(scope.get("query_string", b"").decode())
            given = query.get("token", [""])[0].encode()
            return bool(given) and hmac.compare_digest(given, self._token)
        return False
