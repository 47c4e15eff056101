"""Assemble the ASGI app: routes, error handling, auth, and the gateway's start and stop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from hermitcrab.errors import HermitCrabError, SandboxNotFound
from hermitcrab.gateway import api, channels_api, dashboard, jobs_api, openai_api, sandbox_api
from hermitcrab.gateway.auth import TokenAuth, host_names
from hermitcrab.gateway.http import ApiError
from hermitcrab.gateway.service import Gateway


def build_app(gw: Gateway) -> Any:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await gw.start()
        except HermitCrabError as exc:  # said plainly to `up` and the log, not as a traceback
            from hermitcrab.gateway.server import tell_starter

            tell_starter("error", json.dumps(str(exc)))
            raise
        try:
            yield
        finally:
            await gw.stop()

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        status = 404 if isinstance(exc, SandboxNotFound) else 400
        return ApiError(status, type(exc).__name__, str(exc)).response()

    from starlette.routing import Route

    from hermitcrab.gateway.mcp_server import McpEndpoint

    mcp = gw.mcp_endpoint = McpEndpoint(gw)  # the SDK loads on the first MCP request, not before
    app = Starlette(
        routes=[
            *dashboard.routes(gw),
            *api.routes(gw),
            *openai_api.routes(gw),
            *sandbox_api.routes(gw),
            *jobs_api.routes(gw),
            *channels_api.routes(gw),
            Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"]),
        ],
        lifespan=lifespan,
        exception_handlers={ApiError: api_error, HermitCrabError: domain_error},
    )
    gateway = gw.config.gateway
    return TokenAuth(app, gw.token, host_names(gateway.host, gateway.allowed_hosts))
