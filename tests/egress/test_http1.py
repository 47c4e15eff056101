"""HTTP/1.1 through the proxy where it reads requests (terminated TLS and plain HTTP):
kept-alive connections on both sides, chunked and 100-continue uploads, HEAD, bodies that
end when the server closes, and pipelined requests each decided on its own."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from tests.egress.conftest import BODY, local_rule

# Runs inside the sandbox: one http.client connection to the door, the requests given as
# JSON; prints one JSON line per answer, with whether the same connection carried it.
CLIENT = r"""
import http.client, json, sys
tls_port, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2])
if tls_port:
    conn = http.client.HTTPSConnection("127.0.0.1", 3128)  # trusts the sandbox CA via SSL_CERT_FILE
    conn.set_tunnel("localhost", tls_port)
else:
    conn = http.client.HTTPConnection("127.0.0.1", 3128)
first = None
for method, url, body, chunked in steps:
    if chunked:
        text = body
        body = (text[i:i + 1000].encode() for i in range(0, len(text), 1000))
    conn.request(method, url, body=body, encode_chunked=chunked)
    answer = conn.getresponse()
    data = answer.read()
    first = first or conn.sock
    print(json.dumps({
        "status": answer.status, "body": data.decode(), "upstream": answer.getheader("X-Connection"),
        "length": answer.getheader("Content-Length"), "same": conn.sock is first,
    }))
"""


def client(net, run, steps: list[list[object]], tls_port: int = 0) -> list[dict[str, object]]:
    result = run(net.runtime.exec("box", ["python3", "-c", CLIENT, json.dumps(tls_port), json.dumps(steps)]))
    assert result.exit_code == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def box(net, run):
    s = net.servers
    net.write_policy(
        f"    - name: tls\n      hosts: [localhost]\n      ports: [{s.https_port}]\n"
        "      allowed_ips: [127.0.0.1]\n      tls: terminate\n" + local_rule("plain", s.http_port)
    )
    run(net.runtime.create("box"))
    return s


UPLOAD = "ripple " * 5000  # 35 kB, sent in 1 kB chunks
UPLOADED = f"{len(UPLOAD)} {hashlib.sha256(UPLOAD.encode()).hexdigest()} te=None\n"


def test_terminated_tls_keeps_both_connections_alive(net, run, box) -> None:
    answers = client(
        net,
        run,
        [
            ["GET", "/echo/1", None, False],
            ["POST", "/upload", UPLOAD, True],
            ["HEAD", "/echo/2", None, False],
            ["GET", "/echo/3", None, False],
        ],
        tls_port=box.https_port,
    )
    assert [a["status"] for a in answers] == [200] * 4
    assert answers[0]["body"] == "GET /echo/1 auth=None\n"
    # The chunked upload reached the server whole, framed by a length the proxy worked out.
    assert answers[1]["body"] == UPLOADED
    assert answers[2]["body"] == "" and answers[2]["length"] == str(len("HEAD /echo/2 auth=None\n"))
    assert all(a["same"] for a in answers), "the sandbox's connection was not kept alive"
    assert len({a["upstream"] for a in answers}) == 1, "the server's connection was not reused"
    kept = [e for e in net.store.audit.entries() if "kept-alive" in (e.detail or "")]
    assert len(kept) == 3


def test_plain_http_keeps_alive_past_a_refused_request(net, run, box) -> None:
    allowed = f"http://localhost:{box.http_port}"
    refused = "http://localhost:1"  # no rule names this port
    answers = client(
        net,
        run,
        [
            ["GET", f"{allowed}/echo/a", None, False],
            ["GET", f"{refused}/echo/b", None, False],
            ["PUT", f"{allowed}/upload", UPLOAD, True],
            ["GET", f"{allowed}/until-close", None, False],
            ["GET", f"{allowed}/echo/c", None, False],
        ],
    )
    assert [a["status"] for a in answers] == [200, 403, 200, 200, 200]
    assert "no rule matches" in answers[1]["body"]
    assert answers[2]["body"] == UPLOADED
    # The server ended that body by closing; the proxy re-framed it, so the sandbox's
    # connection lived on.
    assert answers[3]["body"] == (BODY * 3).decode()
    assert all(a["same"] for a in answers)
    assert answers[0]["upstream"] == answers[2]["upstream"] != answers[4]["upstream"]


def test_expect_100_continue_upload(net, run, box) -> None:
    # curl waits for the proxy's 100 Continue before it sends the body.
    upload = f"printf '{'x' * 3000}' > /tmp/u && curl -sS -m 20 -H 'Expect: 100-continue' "
    upload += f"--data-binary @/tmp/u http://localhost:{box.http_port}/upload"
    result = run(net.runtime.exec("box", ["sh", "-c", upload]))
    assert result.stdout.decode().startswith("3000 "), result


PIPELINED = r"""
import socket, sys
allowed, refused = sys.argv[1], sys.argv[2]
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(
    f"GET http://localhost:{allowed}/echo/one HTTP/1.1\r\nHost: localhost\r\n\r\n"
    f"GET http://localhost:{refused}/echo/two HTTP/1.1\r\nHost: localhost\r\n\r\n"
    # A smuggling attempt: two framings that disagree. The proxy must not let the server
    # see a request it did not decide.
    f"POST http://localhost:{allowed}/echo/three HTTP/1.1\r\nHost: localhost\r\n"
    "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n"
    f"0\r\n\r\nGET http://localhost:{refused}/echo/four HTTP/1.1\r\nHost: x\r\n\r\n".encode()
)
s.shutdown(socket.SHUT_WR)  # no more requests: the proxy answers these, then closes
s.settimeout(10)
out = b""
while chunk := s.recv(65536):
    out += chunk
print(out.decode())
"""


def test_pipelined_requests_are_each_decided(net, run, box) -> None:
    result = run(net.runtime.exec("box", ["python3", "-c", PIPELINED, str(box.http_port), "1"]))
    out = result.stdout.decode()
    statuses = [line.split(" ")[1] for line in out.splitlines() if line.startswith("HTTP/1.1 ")]
    # Transfer-Encoding wins (RFC 9112): the smuggled request is read as the fourth
    # request, and decided like any other.
    assert statuses == ["200", "403", "200", "403"], out
    assert "GET /echo/one" in out and "POST /echo/three" in out
    audit = net.network_audit()
    assert [outcome for outcome, _, argv in audit if argv.endswith(("/echo/two", "/echo/four"))] == [
        "denied",
        "denied",
    ]
    assert all(":1/" not in argv for outcome, _, argv in audit if outcome == "allowed")


HTTP10 = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(f"GET http://localhost:{sys.argv[1]}/headers HTTP/1.0\r\n\r\n".encode())  # no Host at all
out = b""
while chunk := s.recv(65536):
    out += chunk
print(out.decode())
"""


def test_http_1_0_without_a_host_header_is_served(net, run, box) -> None:
    result = run(net.runtime.exec("box", ["python3", "-c", HTTP10, str(box.http_port)]))
    out = result.stdout.decode()
    assert out.startswith("HTTP/1.1 200") and f"Host: localhost:{box.http_port}" in out, result


def test_a_name_no_resolver_would_take_is_refused_and_audited(net, run) -> None:
    net.write_policy("    - name: wide\n      hosts: ['*.example.org']\n      ports: [443]\n")
    run(net.runtime.create("box"))
    result = run(net.runtime.exec("box", ["curl", "-sS", "-k", f"https://{'a' * 70}.example.org/"]))
    assert b"response 400" in result.stderr, result
    [entry] = [e for e in net.store.audit.entries() if e.action == "network"]
    assert entry.outcome == "denied" and "not a host name" in entry.detail


def test_a_websocket_upgrade_where_requests_are_read_is_refused_clearly(net, run, box) -> None:
    ask = ["curl", "-sS", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket"]
    upgrade = run(net.runtime.exec("box", [*ask, f"https://localhost:{box.https_port}/chat"]))
    assert b"is not relayed where the proxy reads requests" in upgrade.stdout, upgrade
    assert b"without tls: terminate" in upgrade.stdout


def test_l7_rules_without_termination_take_plain_http_only(net, run) -> None:
    s = net.servers
    net.write_policy(
        f"    - name: checked\n      hosts: [localhost]\n      ports: [{s.http_port}]\n"
        "      allowed_ips: [127.0.0.1]\n      allow: [{methods: [GET], paths: ['/echo/**']}]\n"
    )
    run(net.runtime.create("box"))
    url = f"http://localhost:{s.http_port}"
    assert run(net.runtime.exec("box", ["curl", "-sS", f"{url}/echo/1"])).stdout.startswith(b"GET /echo/1")
    assert b"allows no GET /other" in run(net.runtime.exec("box", ["curl", "-sS", f"{url}/other"])).stdout
    # A tunnel (curl -p) to the same port would hide every request from those rules.
    tunnelled = run(net.runtime.exec("box", ["curl", "-sS", "-p", f"{url}/other"]))
    assert tunnelled.exit_code != 0 and b"403" in tunnelled.stderr, tunnelled
    [entry] = [e for e in net.store.audit.entries() if e.argv == [f"CONNECT localhost:{s.http_port}"]]
    assert entry.outcome == "denied" and "a tunnel would hide" in entry.detail


STAY = r"""
import http.client, os, sys, time
conn = http.client.HTTPSConnection("127.0.0.1", 3128)
conn.set_tunnel("localhost", int(sys.argv[1]))
for turn in range(2):
    conn.request("GET", "/echo/x")
    answer = conn.getresponse()
    print(answer.status, answer.read().decode().strip(), conn.sock is not None, flush=True)
    while turn == 0 and not os.path.exists("/workspace/go"):  # the test changes the policy
        time.sleep(0.01)
"""


def test_a_kept_alive_terminated_connection_follows_policy_changes(net, run, box) -> None:
    async def scenario() -> bytes:
        client = asyncio.ensure_future(net.runtime.exec("box", ["python3", "-c", STAY, str(box.https_port)]))
        while not any(
            e.argv == [f"GET https://localhost:{box.https_port}/echo/x"] for e in net.store.audit.entries()
        ):
            await asyncio.sleep(0.01)
        net.write_policy(local_rule("plain", box.http_port))  # the tls rule is gone
        assert net.runtime.reload_policy()["applied"]
        (Path(net.runtime.get("box").box.spec.workspace) / "go").touch()
        return (await client).stdout

    first, second = run(scenario()).decode().splitlines()
    assert first.startswith("200 GET /echo/x")
    assert (
        second.startswith("403 HermitCrab egress: the policy for localhost")
        and "changed under this" in second
    )


def test_a_bad_target_is_a_400_not_a_traceback(net, run, box) -> None:
    raw = (
        "import socket; s = socket.create_connection(('127.0.0.1', 3128)); "
        "s.sendall(b'GET http://localhost:99999/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); "
        "print(s.recv(300).decode().splitlines()[0])"
    )
    result = run(net.runtime.exec("box", ["python3", "-c", raw]))
    assert result.stdout.decode().strip() == "HTTP/1.1 400 Bad Request", result


def test_an_h2c_upgrade_is_served_as_http_1_1(net, run, box) -> None:
    answer = run(
        net.runtime.exec("box", ["curl", "-sS", "--http2", f"http://localhost:{box.http_port}/echo/h"])
    )
    assert answer.stdout.startswith(b"GET /echo/h"), answer
