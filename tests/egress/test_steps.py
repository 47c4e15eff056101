"""The proxy's steps, each alone: parsing a head, screening a request, dialing out."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from hermitcrab.egress import heads
from hermitcrab.egress.heads import Refused
from hermitcrab.egress.http1 import Request
from hermitcrab.egress.screen import Screen
from hermitcrab.egress.secrets import Secret, SecretStore
from hermitcrab.egress.tunnel import Dialer
from hermitcrab.policy.network import NetDecision
from hermitcrab.policy.schema import NetworkRule

TOKEN = "ghp_" + "x1y2z3" * 6


def test_a_head_is_parsed_once_and_its_bytes_consumed() -> None:
    raw = b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org\r\n\r\n"
    parsed = heads.parse_head(raw + b"early bytes")
    assert (parsed.method, parsed.target, parsed.raw) == ("CONNECT", "example.org:443", raw)

    async def rest() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(raw + b"early bytes")
        reader.feed_eof()
        assert await heads.read_head(reader, parsed) is parsed
        return await reader.read()

    assert asyncio.run(rest()) == b"early bytes"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("example.org:8443", ("example.org", 8443)),
        ("[::1]:443", ("::1", 443)),
        ("Example.ORG", ("example.org", 443)),
    ],
)
def test_host_and_port(target: str, expected: tuple[str, int]) -> None:
    assert heads.split_host_port(target, 443) == expected


@pytest.mark.parametrize("target", ["*.example.org:443", "example.org:0", "example.org:http", "a b:443"])
def test_what_is_not_a_host_and_port_is_refused(target: str) -> None:
    with pytest.raises(Refused) as refused:
        heads.split_host_port(target, 443)
    assert refused.value.status == 400


def test_the_screen_alone_refuses_a_secret_and_adds_the_bound_one_over_tls(tmp_path: Path) -> None:
    secrets = SecretStore(tmp_path / "secrets.json")
    secrets.set(Secret(name="github", value=TOKEN))
    audited: list[tuple[str, ...]] = []
    screen = Screen(secrets, lambda *entry: audited.append(entry))  # type: ignore[arg-type]
    open_rule = NetDecision("allow", None, "test")
    leaking = Request("POST", "/", [("X-Note", "fine")], body=f"token={TOKEN}".encode())
    with pytest.raises(Refused, match="carries the secret 'github'"):
        asyncio.run(screen.request("box", open_rule, leaking, "/", "", "POST /", encrypted=True))
    assert audited and audited[-1][1] == "denied"

    bound = NetworkRule(name="gh", hosts=["api.github.com"], tls="terminate", credentials="github")
    decision = NetDecision("allow", bound, "test")
    clean = Request("GET", "/user", [("Authorization", "Bearer hermitcrab-placeholder-github")])
    _, headers = asyncio.run(screen.request("box", decision, clean, "/user", "", "GET /user", encrypted=True))
    assert ("Authorization", f"Bearer {TOKEN}") in headers
    with pytest.raises(Refused, match="only over TLS"):
        asyncio.run(screen.request("box", decision, clean, "/user", "", "GET /user", encrypted=False))
    assert screen.injected(decision)[0] == TOKEN.encode()


def test_the_dialer_alone_checks_every_address() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    audited: list[tuple[str, ...]] = []
    dialer = Dialer(lambda *entry: audited.append(entry), None)  # type: ignore[arg-type]
    try:
        closed_rule = NetworkRule(name="plain", hosts=["localhost"], ports=[port])
        with pytest.raises(Refused) as refused:
            dialer.dial("box", NetDecision("allow", closed_rule, "test"), "127.0.0.1", port, "CONNECT")
        assert refused.value.status == 403 and audited[-1][1] == "denied"
        open_rule = NetworkRule(name="lo", hosts=["localhost"], ports=[port], allowed_ips=["127.0.0.1"])
        sock = dialer.dial("box", NetDecision("allow", open_rule, "test"), "127.0.0.1", port, "CONNECT")
        assert sock.getpeername() == ("127.0.0.1", port) and audited[-1][1] == "allowed"
        sock.close()
    finally:
        dialer.close()
        server.close()
