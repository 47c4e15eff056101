"""HTTP for an MCP server the agent uses, through its sandbox's egress door: every
connection is one the proxy takes as if the sandbox had opened it (`EgressProxy.knock`),
so the sandbox's network rules, approvals, audit and credential injection apply to it
exactly as to a command inside. The client speaks to the door as to any HTTP proxy
(absolute URLs for http://, CONNECT for https://), and trusts what the sandbox trusts:
the system's roots and the sandbox's own CA, for the TLS the proxy terminates."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from hermitcrab.config.schema import McpServerConfig
    from hermitcrab.runtime import SandboxRuntime

DOOR = "egress-door"  # never resolved: every connection is handed over by the proxy itself
DOOR_PORT = 3128


def door_client(
    knock: Callable[[], Awaitable[socket.socket]],
    ca_bundle: str | None,
    headers: dict[str, str],
    timeout: float,
    auth: Any = None,
) -> Any:
    """An httpx2 client (what the MCP SDK speaks) whose every connection goes through the door."""
    import httpcore2
    import httpx2

    tls = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    transport = httpx2.AsyncHTTPTransport(proxy=f"http://{DOOR}:{DOOR_PORT}", verify=tls, trust_env=False)
    # The same pool httpx2 builds for a proxy, with connections from the door, not the network.
    transport._pool = httpcore2.AsyncHTTPProxy(
        proxy_url=httpcore2.URL(scheme=b"http", host=DOOR.encode(), port=DOOR_PORT, target=b"/"),
        ssl_context=tls,
        network_backend=_DoorBackend(knock),
    )
    return httpx2.AsyncClient(
        transport=transport,
        headers=headers,
        timeout=httpx2.Timeout(timeout, read=None),
        trust_env=False,
        auth=auth,
    )


@contextlib.asynccontextmanager
async def through_door(
    runtime: SandboxRuntime,
    sandbox: str,
    workspace: Path,
    agent: str,
    spec: McpServerConfig,
    auth: Any = None,
) -> AsyncIterator[Any]:
    """The SDK's streamable HTTP transport to `spec.url`, through the agent's sandbox's door;
    `auth` (an OAuth provider) signs its requests, and its own (discovery, refresh) go
    through the door as well."""
    from mcp.client.streamable_http import streamable_http_client

    await runtime.ensure(sandbox, workspace=workspace, agent=agent)
    egress = runtime.egress
    if egress is None:
        raise OSError("this gateway runs no egress proxy, so an HTTP MCP server cannot be reached")
    bundle = runtime.get(sandbox).box.spec.ca_bundle
    http = door_client(lambda: egress.knock(sandbox), str(bundle) if bundle else None, spec.headers,
                       spec.timeout_seconds, auth)  # fmt: skip
    async with http, streamable_http_client(spec.url or "", http_client=http) as streams:
        yield streams


class _DoorBackend:
    """httpcore2's network seam: connect_tcp hands back a connection into the proxy."""

    def __init__(self, knock: Callable[[], Awaitable[socket.socket]]) -> None:
        self._knock = knock

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        from anyio.abc import SocketStream
        from httpcore2._backends.anyio import AnyIOStream

        sock = await self._knock()
        sock.setblocking(False)
        return AnyIOStream(await SocketStream.from_socket(sock))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> Any:
        raise OSError("the egress door takes TCP only")

    async def sleep(self, seconds: float) -> None:
        import anyio

        await anyio.sleep(seconds)
