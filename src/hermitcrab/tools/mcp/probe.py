"""`hermitcrab mcp probe --url URL`: connect to an MCP server as a client, say what it
offers, and call its tools. A diagnostic a person runs on the host: it reaches the URL
directly, not through a sandbox's policy, signs in by OAuth where the server asks
(without a browser), answers an elicitation with the form's defaults, and declines
sampling (no model is consulted). It is also the MCP conformance suite's client command.

By default only tools the server marks read-only are called: a probe must not delete
what a server's `delete_everything` tool deletes. `--call all` calls every tool.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hermitcrab.tools.mcp import oauth
from hermitcrab.tools.mcp.arguments import elicited, example_arguments

if TYPE_CHECKING:
    import mcp_types as types
    from mcp.client import ClientRequestContext

log = logging.getLogger("hermitcrab.mcp")

Calls = Literal["all", "read-only", "none"]
PREVIEW_CHARS = 200


@dataclass
class ToolProbe:
    name: str
    description: str
    read_only: bool
    called: bool = False
    arguments: dict[str, Any] | None = None
    is_error: bool | None = None
    result: str = ""


@dataclass
class ProbeReport:
    url: str
    server: str = ""
    protocol_version: str = ""
    signed_in: bool = False
    tools: list[ToolProbe] = field(default_factory=list)
    resources: int | None = None
    prompts: int | None = None
    elicitations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _text(result: types.CallToolResult) -> str:
    parts = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', '?')}]")
    return " ".join(" ".join(parts).split())[:PREVIEW_CHARS]  # one line, however the server wrapped it


async def probe(
    url: str,
    calls: Calls = "read-only",
    context: dict[str, Any] | None = None,
    client_metadata_url: str | None = None,
) -> ProbeReport:
    import httpx2
    import mcp_types as types
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    report = ProbeReport(url)

    async def on_elicit(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        if isinstance(params, types.ElicitRequestURLParams):
            report.elicitations.append({"message": params.message, "answer": "decline (a URL to visit)"})
            return types.ElicitResult(action="decline")
        answer = elicited(params.requested_schema)
        report.elicitations.append(
            {"message": params.message, "answer": answer if answer is not None else "decline"}
        )
        if answer is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content=answer)

    async def on_sample(context: ClientRequestContext, params: Any) -> types.ErrorData:
        return types.ErrorData(code=types.INVALID_REQUEST, message="the probe consults no model")

    async with httpx2.AsyncClient(timeout=10) as plain:
        auth = oauth.provider(url, plain, context, client_metadata_url)
        async with create_mcp_http_client(auth=auth) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(
                transport,
                elicitation_callback=on_elicit,
                sampling_callback=on_sample,
                client_info=types.Implementation(name="hermitcrab-probe", version=_version()),
            ) as client:
                report.signed_in = auth.context.current_tokens is not None
                info = client.server_info
                report.server = f"{info.name} {info.version}" if info is not None else "(anonymous)"
                report.protocol_version = client.protocol_version
                capabilities = client.server_capabilities
                listed = await client.list_tools()
                for tool in listed.tools:
                    notes = tool.annotations
                    read_only = bool(notes and notes.read_only_hint)
                    entry = ToolProbe(
                        tool.name, (tool.description or "").split("\n")[0][:PREVIEW_CHARS], read_only
                    )
                    report.tools.append(entry)
                    if calls == "none" or (calls == "read-only" and not read_only):
                        continue
                    entry.arguments = example_arguments(tool.input_schema)
                    result = await client.call_tool(tool.name, entry.arguments)
                    entry.called, entry.is_error, entry.result = True, result.is_error, _text(result)
                if capabilities.resources is not None:
                    report.resources = len((await client.list_resources()).resources)
                if capabilities.prompts is not None:
                    report.prompts = len((await client.list_prompts()).prompts)
                report.signed_in = auth.context.current_tokens is not None
    return report


def _version() -> str:
    from hermitcrab import __version__

    return __version__
