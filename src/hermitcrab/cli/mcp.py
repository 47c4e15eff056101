"""`hermitcrab mcp probe`: an MCP server, seen from this machine as a client sees it."""

from __future__ import annotations

import asyncio
import os

from hermitcrab.cli.output import fail, print_json
from hermitcrab.tools.mcp.servers import cause_of

CALLS = ("read-only", "all", "none")


def probe(url: str, call: str, timeout: float, json_output: bool, client_metadata_url: str | None) -> None:
    from hermitcrab.tools.mcp import oauth
    from hermitcrab.tools.mcp.probe import probe as run_probe

    if call not in CALLS:
        fail(f"--call {call!r} is not one of: {', '.join(CALLS)}")
    if client_metadata_url is not None and not client_metadata_url.startswith("https://"):
        fail(f"--client-metadata-url {client_metadata_url!r}: a client id URL must be https")
    if not url.startswith(("http://", "https://")):
        fail(f"{url!r} is not an http(s) URL. fix: the server's endpoint, e.g. http://127.0.0.1:3000/mcp")
    # The conformance suite names pre-registered OAuth clients here; so may a person.
    context = oauth.conformance_context(os.environ.get("MCP_CONFORMANCE_CONTEXT"))
    try:
        report = asyncio.run(asyncio.wait_for(run_probe(url, call, context, client_metadata_url), timeout))  # type: ignore[arg-type]
    except TimeoutError:
        fail(f"{url} did not finish answering within {timeout:g} s")
    except oauth.SignInNeeded as exc:
        fail(f"{url}: {exc}")
    except Exception as exc:  # a server's fault, said plainly: this is a diagnostic
        fail(f"{url}: {cause_of(exc)}")
    if json_output:
        print_json(report.to_json())
        return
    print(f"{report.url}: {report.server}, protocol {report.protocol_version}"
          + (", signed in by OAuth" if report.signed_in else ""))  # fmt: skip
    for tool in report.tools:
        mark = "read-only" if tool.read_only else "may change things"
        print(f"  tool {tool.name} ({mark}): {tool.description}")
        if tool.called:
            outcome = "error" if tool.is_error else "ok"
            print(f"    called with {tool.arguments}: {outcome}: {tool.result}")
    for label, count in (("resources", report.resources), ("prompts", report.prompts)):
        if count is not None:
            print(f"  {label}: {count}")
    for asked in report.elicitations:
        print(f"  asked {asked['message']!r}: answered {asked['answer']}")


def list_servers(json_output: bool) -> None:
    from hermitcrab.cli.approvals import _client

    servers = _client().request("GET", "/api/mcp")["servers"]
    if json_output:
        print_json({"servers": servers})
        return
    if not servers:
        print("No MCP servers are configured (mcp.servers in hermitcrab.yaml).")
    for server in servers:
        line = f"{server['server']} (agent {server['agent']}): {server['state']}"
        if server.get("server_info"):
            line += f", {server['server_info']}"
        print(line)
        if server.get("error"):
            print(f"  error: {server['error']}")
        for tool in server.get("tools", []):
            print(f"  {tool['name']} [{tool['risk']}]: {tool['description']}")


def serve() -> None:
    """`hermitcrab mcp serve`: MCP over stdio for a client that starts its servers as
    commands, relayed to the running gateway's /mcp with its token. One server, two doors."""
    from hermitcrab.cli.client import GatewayClient
    from hermitcrab.config.paths import Paths

    client = GatewayClient(Paths.from_env())
    try:
        asyncio.run(_relay(f"{client.base_url}/mcp", client.token))
    except Exception as exc:
        fail(f"mcp serve: {cause_of(exc)}")


async def _relay(url: str, token: str) -> None:
    import anyio
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    async def pump(source: object, sink: object) -> None:
        async for message in source:  # type: ignore[attr-defined]
            if isinstance(message, Exception):
                continue  # a line that does not parse; the SDK has said so on stderr
            await sink.send(message)  # type: ignore[attr-defined]

    headers = {"Authorization": f"Bearer {token}"}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None))
    async with (
        http,
        stdio_server() as (stdin, stdout),
        streamable_http_client(url, http_client=http) as (upstream_in, upstream_out),
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(pump, stdin, upstream_out)
        await pump(upstream_in, stdout)
        tasks.cancel_scope.cancel()


def login(name: str, browser: bool, timeout: float) -> None:
    """Sign in to a configured MCP server by OAuth; keep what it grants in the secrets store."""
    from hermitcrab.config.loader import load_config
    from hermitcrab.config.paths import Paths
    from hermitcrab.egress.secrets import OAuthGrant, SecretStore
    from hermitcrab.errors import ConfigError
    from hermitcrab.tools.mcp import oauth

    paths = Paths.from_env()
    try:
        servers = load_config(paths.config).mcp.servers
    except ConfigError as exc:
        fail(str(exc))
    spec = servers.get(name)
    if spec is None:
        known = ", ".join(sorted(servers)) or "none"
        fail(f"no MCP server named '{name}' in {paths.config} (mcp.servers; configured: {known})")
    if spec.url is None:
        fail(f"the MCP server {name} runs over stdio in the sandbox: there is nothing to sign in to")
    if not spec.oauth:
        fail(f"mcp.servers.{name} does not use OAuth. fix: add `oauth: true` under it in {paths.config}")
    store, secret = SecretStore(paths.secrets), f"mcp-{name}"

    async def show(url: str) -> None:
        print(f"Open this address to sign in to {name}:\n  {url}", flush=True)
        if browser:
            import webbrowser

            await asyncio.to_thread(webbrowser.open, url)
        print(f"Waiting for the sign-in (up to {timeout:g} s)...", flush=True)

    async def run() -> tuple[str, int, dict]:
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        # A sign-in starts afresh (a client registered before named another callback port),
        # and what it grants is kept only once it has worked: a failed one loses nothing.
        granted: dict = {}
        storage = oauth.StoredTokens(lambda: granted, granted.update)
        async with oauth.LoopbackSignIn(show, timeout) as sign_in:
            auth = oauth.person_provider(spec.url or "", storage, sign_in)
            async with (
                create_mcp_http_client(auth=auth) as http,
                Client(streamable_http_client(spec.url or "", http_client=http)) as client,
            ):
                info = client.server_info
                tools = (await client.list_tools()).tools
        return (f"{info.name} {info.version}".strip() if info else name), len(tools), granted

    try:
        server, tools, granted = asyncio.run(asyncio.wait_for(run(), timeout + 30))
    except TimeoutError:
        fail(f"{spec.url} did not finish the sign-in within {timeout:g} s")
    except oauth.SignInNeeded as exc:
        fail(f"{name}: {exc}")
    except Exception as exc:
        fail(f"{name}: {cause_of(exc)}")
    if not granted.get("tokens"):
        fail(f"{name} let us in without signing in: it needs no OAuth (remove `oauth: true`)")
    store.set_grant(OAuthGrant(secret, spec.url or "", granted["tokens"], granted.get("client")))
    print(
        f"Signed in to {name} ({server}, {tools} tools). The tokens are kept in the secrets store as "
        f"'{secret}' (never in a sandbox); the gateway refreshes them. Restart it or wait a minute "
        "for the server to connect."
    )


def logout(name: str) -> None:
    from hermitcrab.config.paths import Paths
    from hermitcrab.egress.secrets import SecretStore

    store = SecretStore(Paths.from_env().secrets)
    if store.grant(f"mcp-{name}") is None or not store.remove(f"mcp-{name}"):
        fail(f"no sign-in is kept for the MCP server {name}")
    print(f"Forgot the sign-in to {name}.")
