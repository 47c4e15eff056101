"""Real servers on loopback (HTTP, and HTTPS with a self-signed certificate), and a sandbox
runtime whose sandboxes reach them only through the egress proxy."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hermitcrab.approvals import Approvals
from hermitcrab.egress.secrets import SecretStore
from hermitcrab.gateway.parts import build_runtime
from hermitcrab.store import Store

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

BODY = b"hello from the host\n"
RECEIVED_AUTH: list[str | None] = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections alive, as real servers do
    connections = itertools.count(1)

    def setup(self) -> None:
        super().setup()
        self.connection_number = next(self.connections)  # one handler per connection

    def do_GET(self) -> None:
        RECEIVED_AUTH.append(self.headers.get("Authorization"))  # what arrived, whatever went back
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        # /echo shows what arrived, so tests can see what the proxy added or removed.
        body = BODY
        if self.path.startswith("/echo") or self.path.startswith("/repos"):
            body = f"{self.command} {self.path} auth={self.headers.get('Authorization')}\n".encode()
        elif self.path.startswith("/headers"):  # every header, as it arrived
            body = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
        elif self.path.startswith("/upload"):
            te = self.headers.get("Transfer-Encoding")
            body = f"{len(received)} {hashlib.sha256(received).hexdigest()} te={te}\n".encode()
        elif self.path.startswith("/until-close"):  # no length: the body ends when we close
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BODY * 3)
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Connection", str(self.connection_number))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_POST = do_PUT = do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Servers:
    http_port: int
    https_port: int
    cert: Path


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    folder = Path(tempfile.mkdtemp(prefix="hctls"))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Servers(plain.server_address[1], secure.server_address[1], folder / "cert.pem")
    for server in (plain, secure):
        server.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


class Net:
    """A runtime with the egress proxy, over a temporary store and policy file."""

    def __init__(self, root: Path, servers: Servers) -> None:
        self.root = root
        self.servers = servers
        self.policy_file = root / "policy.yaml"
        self.store = Store(root / "state.db")
        self.approvals = Approvals()
        self.secrets = SecretStore(root / "secrets.json")
        # The proxy checks the upstream's certificate; this test server's is self-signed.
        upstream = ssl.create_default_context(cafile=servers.cert)
        self.runtime = build_runtime(
            self.store, policy_file=self.policy_file, workspaces=root / "w", state_root=root / "s",
            approvals=self.approvals, secrets=self.secrets, upstream_tls=upstream,
        )  # fmt: skip

    def write_policy(self, rules: str, default: str = "deny", timeout: float = 120) -> None:
        self.policy_file.write_text(
            f"version: 1\nnetwork:\n  default: {default}\n  approval_timeout_seconds: {timeout}\n"
            f"  rules:\n{rules or '    []'}\n"
        )

    def network_audit(self) -> list[tuple[str, str, str]]:
        return [
            (e.outcome, e.rule or "", e.argv[0]) for e in self.store.audit.entries() if e.action == "network"
        ]


def local_rule(name: str, port: int, access: str = "allow", ips: bool = True) -> str:
    text = f"    - name: {name}\n      hosts: [localhost]\n      ports: [{port}]\n      access: {access}\n"
    return text + ("      allowed_ips: [127.0.0.1]\n" if ips else "")


@pytest.fixture
def net(servers: Servers, run: Callable[[Any], Any]) -> Iterator[Net]:
    made = Net(Path(tempfile.mkdtemp(prefix="hcn")), servers)
    yield made
    run(made.runtime.stop())
    run(made.runtime.egress.close_all())
    made.store.close()
    shutil.rmtree(made.root, ignore_errors=True)
