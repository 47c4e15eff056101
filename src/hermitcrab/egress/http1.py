"""HTTP/1.1 on both sides of the proxy wherever it reads requests (terminated TLS, plain
HTTP, inference.local): keep-alive, chunked bodies, `Expect: 100-continue`, HEAD.

Framing is h11's, strict on both sides, so the proxy and a server never disagree about
where a request ends (no smuggling a second request past the screen). A request body is
read whole (it is screened for secrets) and sent on with a Content-Length; a response is
streamed back as it arrives, re-framed (chunked) when the server only ends it by closing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import h11

CHUNK = 256 * 1024
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024  # bodies are screened whole
BODY_BUDGET = 4 * MAX_BODY  # held at once over one sandbox's connections
IDLE_S = 120.0  # a kept-alive connection waits this long for its next request
READ_S = 60.0  # and a request this long for each part of its body
# Never forwarded: they describe one hop, and h11 frames each hop itself.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Not sent on with a request either: the proxy read the whole body, and sends its length.
REQUEST_ONLY = frozenset({"content-length", "expect"})
REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """A request this side cannot take; answered with *status*, then the connection ends."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    upgrade: str | None = None  # the protocol asked for (Upgrade:), e.g. websocket


def end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers without hop-by-hop ones, including any the Connection header names."""
    named = {token.strip().lower() for k, v in headers if k.lower() == "connection" for token in v.split(",")}
    return [(k, v) for k, v in headers if k.lower() not in HOP_HEADERS and k.lower() not in named]


def _text(headers: h11._headers.Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v, *_ in headers.raw_items()]


def _wire(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


class BodyBudget:
    """The request bodies one sandbox's connections hold in memory at once (each is read
    whole to be screened): without it, max_connections x MAX_BODY. Used on the event loop."""

    def __init__(self, limit: int = BODY_BUDGET) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class Downstream:
    """The sandbox's side of one connection: requests in, responses out."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        budget: BodyBudget,
        already: bytes = b"",
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.budget = budget
        self.holding = 0  # of the budget, for the body of the request being handled
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if already:  # (b"" would tell h11 the connection has ended)
            self.conn.receive_data(already)

    async def _next(self, timeout: float) -> object:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                raise HttpError(status, f"malformed request: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), timeout)
            except TimeoutError:
                raise HttpError(408, "the request did not arrive in time") from None
            self.conn.receive_data(data)

    async def request(self) -> Request | None:
        """The next request, body and all; None once the client is done with the connection."""
        self.release()  # the last request's body has been sent on
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        if self.conn.our_state is not h11.IDLE:
            return None  # the last exchange ended this connection
        try:
            event = await self._next(IDLE_S)
        except HttpError as exc:
            if exc.status == 408:
                return None  # an idle keep-alive connection, not a late request
            raise
        if not isinstance(event, h11.Request):
            return None  # closed
        if self.conn.they_are_waiting_for_100_continue:
            await self._write(h11.InformationalResponse(status_code=100, headers=[]))
        body = bytearray()
        while True:
            part = await self._next(READ_S)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY:
                    raise HttpError(413, f"request body over {MAX_BODY} bytes")
                if not self.budget.take(len(part.data)):
                    self.release()
                    held = self.budget.held // (1024 * 1024)
                    raise HttpError(
                        503, f"this sandbox's connections hold {held} MiB of request bodies; try again"
                    )
                self.holding += len(part.data)
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise ConnectionError("the client went away mid-request")
        # Hop-by-hop headers (and any the client's Connection names) go now, before the
        # proxy adds its own: a client must not be able to name those away.
        raw = _text(event.headers)
        headers = [(k, v) for k, v in end_to_end(raw) if k.lower() not in REQUEST_ONLY]
        upgrade = next((v for k, v in raw if k.lower() == "upgrade"), None)
        method, target = event.method.decode("latin-1"), event.target.decode("latin-1")
        return Request(method, target, headers, bytes(body), upgrade)

    def release(self) -> None:
        self.budget.give(self.holding)
        self.holding = 0

    async def _write(self, event: object) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    @property
    def can_respond(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    async def respond(
        self, status: int, headers: list[tuple[str, str]], body: AsyncIterator[bytes], reason: bytes = b""
    ) -> None:
        await self._write(h11.Response(status_code=status, headers=_wire(headers), reason=reason))
        async for data in body:
            if data:
                await self._write(h11.Data(data=data))
        await self._write(h11.EndOfMessage())

    async def refuse(self, status: int, message: str, extra: list[tuple[str, str]], close: bool) -> None:
        """A plain-text answer from the proxy itself; the connection lives on unless *close*."""
        body = f"HermitCrab egress: {message}\n".encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *extra]
        if close:
            headers.append(("Connection", "close"))

        async def once() -> AsyncIterator[bytes]:
            yield body

        await self.respond(status, headers, once(), REASONS.get(status, "Error").encode())

    @property
    def open(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE


class Upstream:
    """One connection to a server, kept alive between requests when the server allows."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: object = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.key = key  # what this connection is to (for reuse by the next request)
        self.conn = h11.Connection(h11.CLIENT)

    @property
    def reusable(self) -> bool:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return self.conn.our_state is h11.IDLE and not self.writer.is_closing()

    async def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """headers: end to end already (Downstream.request), with the proxy's own added."""
        if body or method in ("POST", "PUT", "PATCH"):
            headers = [*headers, ("Content-Length", str(len(body)))]
        out = self.conn.send(h11.Request(method=method, target=target, headers=_wire(headers)))
        if body:
            out += self.conn.send(h11.Data(data=body))
        out += self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        await self.writer.drain()

    async def _next(self) -> object:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ConnectionError(f"the server sent a malformed response: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(CHUNK))

    async def response(self) -> tuple[int, bytes, list[tuple[str, str]]]:
        while True:
            event = await self._next()
            if isinstance(event, h11.Response):
                return event.status_code, event.reason, end_to_end(_text(event.headers))
            if not isinstance(event, h11.InformationalResponse):
                raise ConnectionError("the server closed the connection before answering")

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                yield event.data
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise ConnectionError("the server closed the connection mid-response")

    def close(self) -> None:
        self.writer.close()
