"""A connection's first request head, parsed once, and the proxy's refusals."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from hermitcrab.egress import http1

MAX_HEAD = http1.MAX_HEAD
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
RULE_HEADER = "X-HermitCrab-Rule"
HOST_NAME = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")  # a name or an IP (IPv6 comes unbracketed)


@dataclass
class Head:
    """A connection's first request head, read to choose a path: CONNECT or forwarding
    (where http1 reads it again, whole)."""

    method: str
    target: str
    raw: bytes  # up to and including its blank line


class Refused(Exception):
    """A request the proxy answers itself, with a status, a reason and the deciding rule."""

    def __init__(self, status: int, reason: str, rule: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.rule = rule


def parse_head(raw: bytes) -> Head:
    """The head up to and including its blank line (anything after it is ignored)."""
    raw = raw[: raw.index(b"\r\n\r\n") + 4]
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise Refused(400, f"malformed request line {lines[0][:100]!r}")
    return Head(parts[0].upper(), parts[1], raw)


async def read_head(reader: asyncio.StreamReader, parsed: Head | None = None) -> Head | None:
    """The head at the start of `reader`; where it was parsed already (`parsed`), its bytes
    are only consumed."""
    if parsed is not None:
        await reader.readexactly(len(parsed.raw))
        return parsed
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise Refused(431, f"request head larger than {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError:
        return None
    return parse_head(raw)


def split_host_port(target: str, default: int) -> tuple[str, int]:
    """host:port (or [v6]:port) of a CONNECT or a URL, checked: a literal name, a real port."""
    if target.startswith("["):  # [v6]:port
        host, _, rest = target[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
    try:
        number = int(port) if port else default
    except ValueError:
        raise Refused(400, f"bad port in {target[:200]!r}") from None
    host = host.lower()
    if not 0 < number < 65536 or not HOST_NAME.fullmatch(host):
        raise Refused(400, f"{target[:200]!r} is not a host:port")
    return host, number


def with_host(
    headers: list[tuple[str, str]], host: str, port: int, default_port: int
) -> list[tuple[str, str]]:
    """The Host the policy decided on, not the one the client wrote (which could route to
    another site behind the same address, with the bound credential)."""
    name = f"[{host}]" if ":" in host else host
    authority = name if port == default_port else f"{name}:{port}"
    return [(k, v) for k, v in headers if k.lower() != "host"] + [("Host", authority)]


def origin(path: str, query: str) -> str:
    return path + (f"?{query}" if query else "")


def refusal(refused: Refused) -> bytes:
    body = f"HermitCrab egress: {refused.reason}\n".encode()
    head = (
        f"HTTP/1.1 {refused.status} {http1.REASONS.get(refused.status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"{RULE_HEADER}: {refused.rule or '-'}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def refuse(writer: asyncio.StreamWriter, refused: Refused) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(refusal(refused))
        await writer.drain()
