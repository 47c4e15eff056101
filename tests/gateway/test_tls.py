"""The gateway's own TLS, for a bind off loopback without a proxy in front: the CLI and the
sandboxes' inference.local pin its certificate, plain HTTP gets nothing, the token is still
required, doctor says the bind is safe, and a pair that does not load stops `up` with the
files named."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import httpx
import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.config.tls import pinned
from hermitcrab.egress.ca import SandboxCA
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port


def make_pair(folder: Path, name: str = "gateway") -> tuple[Path, Path]:
    """A certificate issued by a CA of its own (not trusted anywhere): the clients must pin
    the certificate itself."""
    cert, key = SandboxCA(folder / f"{name}-ca", name).issue("crab.example.test")
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    return cert_file, key_file


def tls_config(port: int, cert: Path, key: Path) -> str:
    config = SCRIPTED_CONFIG.format(port=port, replies='["Bonjour!"]')
    return config.replace(
        "gateway:\n",
        f"gateway:\n  host: 0.0.0.0\n  allow_non_loopback: true\n  tls_cert: {cert}\n  tls_key: {key}\n",
        1,
    )


def test_the_gateway_speaks_tls_and_its_clients_pin_it(home: Paths, tmp_path: Path) -> None:
    cert, key = make_pair(tmp_path)
    port = free_port()
    home.config.write_text(tls_config(port, cert, key))
    started = hc(home, "up")
    assert started.returncode == 0, started.stderr
    try:
        status = json.loads(hc(home, "status", "--json").stdout)  # the CLI, through TLS
        assert status["url"] == f"https://0.0.0.0:{port}"
        assert hc(home, "dashboard").stdout.startswith(f"https://127.0.0.1:{port}/#token=")

        with httpx.Client(verify=pinned(cert), trust_env=False) as client:
            assert client.get(f"https://127.0.0.1:{port}/healthz").status_code == 200
            assert client.get(f"https://127.0.0.1:{port}/api/status").status_code == 401  # token still asked
        with pytest.raises(httpx.HTTPError):  # a certificate no one pinned is not trusted
            httpx.get(f"https://127.0.0.1:{port}/healthz", trust_env=False)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert b"HTTP/1.1 200" not in plain.recv(4096)  # plain HTTP gets no answer

        report = json.loads(hc(home, "doctor", "--json").stdout)
        remote = next(c for c in report["checks"] if c["name"] == "remote access")
        assert remote["ok"] and not remote["warning"] and "over TLS" in remote["detail"]

        if shutil.which("bwrap") is not None:  # inference.local reaches the router through TLS
            assert hc(home, "sandbox", "create", "agent").returncode == 0
            body = json.dumps({"model": "main", "messages": [{"role": "user", "content": "hi"}]})
            asked = hc(home, "sandbox", "exec", "agent", "--", "curl", "-sS", "-m", "30",
                       "-H", "Content-Type: application/json", "-d", body,
                       "http://inference.local/v1/chat/completions")  # fmt: skip
            assert asked.returncode == 0, asked.stderr
            assert json.loads(asked.stdout)["choices"][0]["message"]["content"] == "Bonjour!"
    finally:
        hc(home, "down")


def test_a_pair_that_does_not_load_stops_up_with_the_files_named(home: Paths, tmp_path: Path) -> None:
    cert, _ = make_pair(tmp_path, "one")
    _, other_key = make_pair(tmp_path, "two")
    home.config.write_text(tls_config(free_port(), cert, other_key))
    started = hc(home, "up")
    assert started.returncode != 0
    assert "gateway.tls_cert/tls_key" in started.stderr and str(other_key) in started.stderr
    half = tls_config(free_port(), cert, other_key).replace(f"  tls_key: {other_key}\n", "")
    home.config.write_text(half)
    checked = hc(home, "up")
    assert checked.returncode != 0 and "tls_cert and tls_key go together" in checked.stderr
