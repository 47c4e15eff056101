"""`python -m tests.tools.mcp.bearer_bridge UPSTREAM TOKEN_FILE PORT`: a loopback reverse proxy
that adds the gateway's bearer token to each request and passes everything else through
(Host and Origin included, so DNS-rebinding checks still see the client's), streaming
responses back as they come. The conformance suite's server runner sends no headers of its
own, and /mcp answers nothing without the token."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

HOP_BY_HOP = {"authorization", "content-length", "transfer-encoding", "connection"}


def app(upstream: str, token: str) -> Starlette:
    client = httpx.AsyncClient(timeout=None, trust_env=False)

    async def forward(request: Request) -> StreamingResponse:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("authorization", f"Bearer {token}"))
        sent = client.build_request(request.method, upstream, headers=headers, content=await request.body())
        answer = await client.send(sent, stream=True)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
        return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, headers=kept)

    return Starlette(routes=[Route("/mcp", forward, methods=["GET", "POST", "DELETE"])])


if __name__ == "__main__":
    upstream, token_file, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    token = token_file.read_text().strip()
    uvicorn.run(app(upstream, token), host="127.0.0.1", port=port, log_level="warning")
