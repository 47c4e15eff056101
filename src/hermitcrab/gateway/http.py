"""Small helpers shared by the API modules: capped JSON bodies, error responses, and
noticing a WebSocket client has gone."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": self.message, "type": self.kind, "code": self.status}},
            status_code=self.status,
        )


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes; a bigger body is refused before it is buffered."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _too_large(len(body), limit)
    return bytes(body)


async def read_json(request: Request, limit: int) -> Any:
    """Read at most `limit` bytes of JSON."""
    body = await read_body(request, limit)
    try:
        return json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "request_too_large",
        f"request body of {size} bytes exceeds the limit of {limit} bytes "
        "(gateway.max_request_bytes). fix: send less, or attach large content as a file",
    )


def check_text_size(text: str, limit: int) -> None:
    size = len(text.encode())
    if size > limit:
        raise ApiError(
            413,
            "message_too_large",
            f"message of {size} bytes exceeds the limit of {limit} bytes "
            "(gateway.max_message_bytes). fix: shorten it or split it",
        )


async def drain(ws: WebSocket) -> None:
    """Read (and ignore) what a WebSocket client sends, so that its close is noticed at once."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
