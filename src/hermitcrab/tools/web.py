"""`web_fetch`: a URL through the sandbox's own egress door, so the policy decides it as
if the sandbox had asked (same rules, same approvals, same audit). The page becomes
readable text here; its content is untrusted and taints the turn that reads it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import re
import socket
import ssl
import sys
import threading
from typing import Any
from urllib.parse import urljoin, urlsplit

from pydantic import Field

from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult

MAX_BODY_BYTES = 2 * 1024 * 1024  # read from the server at most; the rest is never fetched
MAX_HTML_CHARS = 512 * 1024  # converted at most
HTML_SECONDS = 10.0  # for the conversion
FETCH_THREADS = 4
HTML_TO_TEXT = """
import sys, html2text
converter = html2text.HTML2Text()
converter.body_width = 0  # no hard wrapping: the model reads lines, not a terminal
converter.ignore_images = True
sys.stdout.write(converter.handle(sys.stdin.read()))
"""
MAX_REDIRECTS = 5
TIMEOUT_SECONDS = 30.0
USER_AGENT = "HermitCrab-web_fetch/1"


class FetchArgs(Args):
    url: str = Field(description="http or https URL")
    max_chars: int = Field(20000, ge=100, le=200000, description="cut the text here")


class WebFetchTool(Tool):
    name = "web_fetch"
    description = "Fetch a web page as readable text."
    risk: Risk = "network"
    Args = FetchArgs

    def __init__(self) -> None:
        # Its own few threads: a server that trickles bytes must not take the threads the
        # gateway's store and sandboxes run on.
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def summary(self, args: FetchArgs) -> str:
        return f"web_fetch: {args.url}"

    async def _fetch(self, door: socket.socket, url: str, bundle: Any, timeout: float) -> Fetched:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="web_fetch")
        # The whole exchange has a deadline (a socket timeout counts per read, which a slow
        # server resets forever); at it, or when the call is stopped, the socket is shut.
        timer = threading.Timer(timeout, _shut, (door,))
        timer.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _get, door, url, bundle, timeout
            )
        finally:
            timer.cancel()
            _shut(door)

    async def run(self, args: FetchArgs, ctx: ToolContext) -> ToolResult:
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return ToolResult(f"web_fetch: {args.url!r} is not an http(s) URL", error=True)
        egress = ctx.runtime.egress
        if egress is None:
            return ToolResult("web_fetch: this gateway has no egress proxy, so no network", error=True)
        managed = ctx.runtime.get(ctx.sandbox)
        bundle = managed.box.spec.ca_bundle
        # A request the policy holds for a person waits as long as the approval may.
        timeout = managed.policy.network.approval_timeout_seconds + TIMEOUT_SECONDS
        url = args.url
        for _ in range(MAX_REDIRECTS + 1):
            door = await egress.knock(ctx.sandbox)
            status, headers, body, truncated = await self._fetch(door, url, bundle, timeout)
            location = headers.get("location")
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            break
        else:
            return ToolResult(f"web_fetch: more than {MAX_REDIRECTS} redirects from {args.url}", error=True)
        text = await to_text(body, headers.get("content-type", ""))
        if len(text) > args.max_chars:
            text, truncated = text[: args.max_chars], True
        note = f"[cut at {args.max_chars} characters]" if truncated else ""
        if status >= 400:
            return ToolResult(f"HTTP {status} from {url}\n{text}\n{note}".strip(), error=True, taint=url)
        return ToolResult(f"{text}\n{note}".strip(), taint=url, data={"url": url, "status": status})


Fetched = tuple[int, dict[str, str], bytes, bool]  # status, headers, body, truncated


def _shut(door: socket.socket) -> None:
    with contextlib.suppress(OSError):
        door.shutdown(socket.SHUT_RDWR)


def _get(door: socket.socket, url: str, bundle: Any, timeout: float) -> Fetched:
    """One GET over a connection into the proxy (blocking; runs on a worker thread)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    door.settimeout(timeout)
    try:
        if parts.scheme == "https":
            port = parts.port or 443
            door.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = _read_head(door)
            status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 502
            if status != 200:
                return status, {}, head.split(b"\r\n\r\n", 1)[-1], False
            context = ssl.create_default_context(cafile=str(bundle) if bundle else None)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout)
            conn.sock = context.wrap_socket(door, server_hostname=host)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        else:
            conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
            conn.sock = door
            target = url  # absolute form: the proxy reads it as a proxy request
        conn.request("GET", target, headers={"User-Agent": USER_AGENT, "Accept": "text/html, text/*, */*"})
        response = conn.getresponse()
        body = response.read(MAX_BODY_BYTES + 1)
        headers = {k.lower(): v for k, v in response.getheaders()}
        conn.close()
        return response.status, headers, body[:MAX_BODY_BYTES], len(body) > MAX_BODY_BYTES
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return 502, {}, f"web_fetch: {url}: {type(exc).__name__}: {exc}".encode(), False
    finally:
        door.close()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data


async def to_text(body: bytes, content_type: str) -> str:
    """The body as readable text. HTML is converted by html2text in a child process with a
    time limit: some pages (deeply nested lists) take it minutes, and a page is hostile."""
    charset = "utf-8"
    for item in content_type.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    if "html" not in content_type.lower() and not text.lstrip()[:15].lower().startswith(
        ("<!doctype html", "<html")
    ):
        return text.strip()
    html = text[:MAX_HTML_CHARS]
    # Isolated (-I: no current folder, no user site, no PYTHON* variables), from '/', with
    # no environment: what converts a hostile page must not find a module planted for it.
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        HTML_TO_TEXT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd="/",
        env={},
    )
    try:
        out, _ = await asyncio.wait_for(child.communicate(html.encode()), HTML_SECONDS)
    except TimeoutError:
        child.kill()
        await child.wait()
        return (
            strip_tags(html)
            + f"\n[the page was too complex to convert within {HTML_SECONDS:g} s; tags stripped]"
        )
    if child.returncode != 0:
        return strip_tags(html)
    return out.decode(errors="replace").strip()


def strip_tags(html: str) -> str:
    """The text of a page without its markup: crude, but linear in the page's size."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()
