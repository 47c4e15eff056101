"""The dashboard's page and files (no data in them: everything it shows comes from the API),
and its sign-in: the gateway token, posted once, exchanged for a session cookie."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hermitcrab.gateway.auth import COOKIE, SESSION_SECONDS, session_cookie
from hermitcrab.gateway.http import ApiError, read_json
from hermitcrab.gateway.service import Gateway

log = logging.getLogger("hermitcrab.auth")

STATIC = Path(__file__).parent / "static"
LOGIN_BYTES = 4096
FILES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def routes(gw: Gateway) -> list[Any]:
    token = gw.token.encode()

    async def page(request: Request) -> Response:
        return HTMLResponse((STATIC / "index.html").read_text(), headers={"cache-control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in FILES:  # only these, by name: no path reaches anything else
            raise ApiError(404, "not_found", f"no dashboard file {name!r}")
        return FileResponse(STATIC / name, media_type=FILES[name], headers={"cache-control": "no-cache"})

    async def login(request: Request) -> Response:
        body = await read_json(request, LOGIN_BYTES)
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given.strip().encode(), token):
            client = request.client.host if request.client else "?"
            log.warning("dashboard sign-in with a wrong token", extra={"client": client})
            raise ApiError(401, "unauthorized", "that is not the gateway's token")
        response = Response(status_code=204)
        response.set_cookie(
            COOKIE,
            session_cookie(token),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
    ]
