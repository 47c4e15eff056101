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
