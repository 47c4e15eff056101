"""Programs inside a sandbox reach the network only through the proxy, as the policy says."""

from __future__ import annotations

import asyncio

from tests.conftest import until
from tests.egress.conftest import BODY, local_rule


def curl(net, run, url: str, *extra: str):
    return run(net.runtime.exec("box", ["curl", "-sS", "-m", "20", *extra, url]))


def test_allowed_http_and_https_pass_through_the_door(net, run) -> None:
    s = net.servers
    net.write_policy(local_rule("web", s.http_port) + local_rule("tls", s.https_port))
    run(net.runtime.create("box"))
    assert curl(net, run, f"http://localhost:{s.http_port}/x").stdout == BODY
    assert curl(net, run, f"https://localhost:{s.https_port}/x", "-k").stdout == BODY
    script = f"import urllib.request; print(urllib.request.urlopen('http://localhost:{s.http_port}/').read())"
    py = run(net.runtime.exec("box", ["python3", "-c", script]))  # honours HTTP_PROXY by itself
    assert py.stdout.strip() == repr(BODY).encode()
    audit = net.network_audit()
    assert ("allowed", "web", f"GET http://localhost:{s.http_port}/x") in audit
    assert ("allowed", "tls", f"CONNECT localhost:{s.https_port}") in audit
    run(until(lambda: net.runtime.egress._counts.count("box") == 0, what="every connection to be let go"))


def test_what_no_rule_allows_is_refused_and_audited(net, run) -> None:
    s = net.servers
    net.write_policy(local_rule("web", s.http_port))
    run(net.runtime.create("box"))
    refused = curl(net, run, f"https://localhost:{s.https_port}/", "-k")
    assert refused.exit_code != 0 and b"403" in refused.stderr
    page = curl(net, run, f"http://localhost:{s.https_port}/")
    assert b"no rule matches localhost" in page.stdout and b"network.default is deny" in page.stdout
    assert ("denied", "network.default", f"CONNECT localhost:{s.https_port}") in net.network_audit()


def test_loopback_private_and_metadata_need_allowed_ips(net, run) -> None:
    s = net.servers
    rules = local_rule("no-ips", s.http_port, ips=False)
    rules += (
        "    - name: private\n      hosts: [10.0.0.1, 169.254.169.254, 127.0.0.1]\n      ports: [80, 443]\n"
    )
    net.write_policy(rules)
    run(net.runtime.create("box"))
    loopback = curl(net, run, f"http://localhost:{s.http_port}/")
    assert b"is a loopback address; only a rule listing it in allowed_ips" in loopback.stdout
    for target, kind in [("10.0.0.1", b"private"), ("169.254.169.254", b"cloud metadata"),
                         ("127.0.0.1", b"loopback")]:  # fmt: skip
        answer = curl(net, run, f"http://{target}/latest/meta-data/")
        assert kind + b" address" in answer.stdout, answer
    assert all(outcome == "denied" for outcome, _, _ in net.network_audit())


def test_no_dns_and_no_way_around_the_proxy(net, run) -> None:
    s = net.servers
    net.write_policy(local_rule("web", s.http_port))
    run(net.runtime.create("box"))
    dns = run(
        net.runtime.exec(
            "box", ["python3", "-c", "import socket; socket.getaddrinfo('localhost.example', 80)"]
        )
    )
    assert dns.exit_code != 0 and b"gaierror" in dns.stderr
    direct = curl(net, run, f"http://127.0.0.1:{s.http_port}/", "--noproxy", "*")
    assert direct.exit_code != 0 and direct.stdout == b""


def test_ask_then_approved_then_denied_then_timed_out(net, run) -> None:
    s = net.servers
    net.write_policy(local_rule("ask", s.http_port, access="ask"), timeout=1.0)
    run(net.runtime.create("box"))

    async def held(allow: bool | None) -> bytes:
        task = asyncio.ensure_future(
            net.runtime.exec("box", ["curl", "-sS", "-m", "20", f"http://localhost:{s.http_port}/"])
        )
        if allow is not None:
            while not net.approvals.pending():
                await asyncio.sleep(0.01)
            approval = net.approvals.pending()[0]
            assert (approval.host, approval.port, approval.rule) == ("localhost", s.http_port, "ask")
            net.approvals.decide(approval.id, allow)
        return (await task).stdout

    assert run(held(True)) == BODY
    assert b"a person denied localhost" in run(held(False))
    assert b"nobody approved localhost" in run(held(None))
    states = [a.state for a in net.approvals.all()]
    assert states == ["approved", "denied", "expired"]
    outcomes = [o for o, _, _ in net.network_audit()]
    assert outcomes == ["asked", "approved", "allowed", "asked", "denied", "asked", "denied"]
    approved = [e for e in net.store.audit.entries() if e.outcome == "approved"]
    first = net.approvals.all()[0]
    assert approved[0].rule == "ask" and f"(approval {first.id})" in approved[0].detail


def test_approve_always_writes_a_rule_that_outlives_a_restart(net, run) -> None:
    s = net.servers
    net.write_policy("    # keep me\n" + local_rule("ask", s.http_port, access="ask"))
    run(net.runtime.create("box"))
    rule = {
        "name": "approved-web",
        "hosts": ["localhost"],
        "ports": [s.http_port],
        "allowed_ips": ["127.0.0.1"],
    }
    net.runtime.add_network_rule("box", rule, actor="cli")
    text = net.policy_file.read_text()
    assert "# keep me" in text and "name: approved-web" in text
    assert curl(net, run, f"http://localhost:{s.http_port}/").stdout == BODY  # no question asked
    change = [e for e in net.store.audit.entries() if e.action == "policy.change"][-1]
    assert "+    - name: approved-web" in change.detail
    run(net.runtime.stop())
    run(net.runtime.restore_all())
    assert curl(net, run, f"http://localhost:{s.http_port}/").stdout == BODY


def test_policy_changes_apply_live_and_a_broken_file_changes_nothing(net, run) -> None:
    s = net.servers
    net.write_policy("")
    run(net.runtime.create("box"))
    assert b"no rule matches" in curl(net, run, f"http://localhost:{s.http_port}/").stdout

    async def watched() -> bytes:
        watcher = asyncio.ensure_future(net.runtime.watch_policy_file(0.02))
        await asyncio.sleep(0.05)
        net.write_policy(local_rule("web", s.http_port))
        try:
            for _ in range(500):
                result = await net.runtime.exec("box", ["curl", "-sS", f"http://localhost:{s.http_port}/"])
                if result.stdout == BODY:
                    return result.stdout
                await asyncio.sleep(0.01)
            return b""
        finally:
            watcher.cancel()

    assert run(watched()) == BODY
    net.policy_file.write_text("version: 1\nnetwork:\n  rules: [{name: x}]\n")  # hosts missing
    outcome = net.runtime.reload_policy()
    assert outcome["applied"] is False and "hosts" in outcome["error"]
    assert "hosts" in net.runtime.policy_error
    assert curl(net, run, f"http://localhost:{s.http_port}/").stdout == BODY  # the last good policy


DOOR_ABUSE = r"""
import socket
gate = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    gate.connect("/run/hermitcrab/egress.sock")
    print("connected")
except ConnectionRefusedError:
    print("refused")
"""


def test_the_door_closes_once_the_supervisor_has_handed_over_its_listener(net, run) -> None:
    """A socket handed over by a sandbox process shares its file description (O_NONBLOCK
    too) with that process, which could turn it blocking under the event loop: so once
    the supervisor's listener is in, nothing more can come through the door."""
    s = net.servers
    net.write_policy(local_rule("web", s.http_port))
    run(net.runtime.create("box"))
    abuse = run(net.runtime.exec("box", ["python3", "-c", DOOR_ABUSE]))
    assert abuse.stdout.decode().strip() == "refused", abuse
    assert curl(net, run, f"http://localhost:{s.http_port}/x").stdout == BODY


HOLD = r"""
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", 3128)) for _ in range(3)]  # idle: no request yet
extra = socket.create_connection(("127.0.0.1", 3128))
extra.settimeout(10)
print(extra.recv(300).decode().split("\r\n")[0])
held[0].close()
for attempt in range(1000):  # until the proxy has seen that close
    again = socket.create_connection(("127.0.0.1", 3128))
    again.sendall(f"GET http://localhost:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    again.settimeout(10)
    status = again.recv(300).decode().split("\r\n")[0]
    again.close()
    if " 503 " not in status:
        break
    time.sleep(0.01)
print(status)
"""


def test_a_sandbox_cannot_hold_more_connections_than_its_limit(net, run) -> None:
    s = net.servers
    net.policy_file.write_text(
        "version: 1\nnetwork:\n  max_connections: 3\n  rules:\n" + local_rule("web", s.http_port)
    )
    run(net.runtime.create("box"))
    result = run(net.runtime.exec("box", ["python3", "-c", HOLD, str(s.http_port)]))
    assert result.stdout.decode().splitlines() == ["HTTP/1.1 503 Service Unavailable", "HTTP/1.1 200 OK"]
    [entry] = [e for e in net.store.audit.entries() if e.rule == "network.max_connections"]
    assert entry.outcome == "denied" and "already has 3 connections open" in entry.detail
    # Every connection, whichever way it ended, gave its place back.
    run(until(lambda: net.runtime.egress._counts.count("box") == 0, what="the count to drain"))


def test_an_approved_tunnel_carries_tls_end_to_end(net, run) -> None:
    s = net.servers
    net.write_policy(local_rule("ask-tls", s.https_port, access="ask"))
    run(net.runtime.create("box"))

    async def approved() -> bytes:
        task = asyncio.ensure_future(
            net.runtime.exec("box", ["curl", "-sS", "-k", "-m", "20", f"https://localhost:{s.https_port}/"])
        )
        while not net.approvals.pending():
            await asyncio.sleep(0.01)
        net.approvals.decide(net.approvals.pending()[0].id, True)
        return (await task).stdout

    assert run(approved()) == BODY
    assert [o for o, _, _ in net.network_audit()] == ["asked", "approved", "allowed"]


def test_a_request_host_is_a_literal_name_never_a_pattern(net, run) -> None:
    """A plain-HTTP request to '*.example.org' once matched an ask rule, and approving it
    'always' wrote the wildcard into the policy."""
    net.write_policy(
        "    - name: ask-any\n      hosts: ['*.example.org']\n      ports: [80]\n      access: ask\n"
    )
    run(net.runtime.create("box"))
    raw = (
        "import http.client; c = http.client.HTTPConnection('127.0.0.1', 3128); "
        "c.putrequest('GET', 'http://*.example.org/', skip_host=True); c.putheader('Host', 'x.example.org'); "
        "c.endheaders(); r = c.getresponse(); print(r.status, r.read().decode())"
    )
    answer = run(net.runtime.exec("box", ["python3", "-c", raw])).stdout
    assert answer.startswith(b"400") and b"is not a host name" in answer
    assert net.approvals.pending() == [] and net.approvals.all() == []


def test_a_pipeline_of_refused_requests_cannot_flood_the_audit_log(net, run) -> None:
    """3,000 refused requests, pipelined on one connection, each with a long target,
    once grew the store by 174 MB in 3 s."""
    net.write_policy("")
    run(net.runtime.create("box"))
    flood = """
import socket
s = socket.create_connection(("127.0.0.1", 3128))
one = b"GET http://denied.example/" + b"a" * 6000 + b" HTTP/1.1\\r\\nHost: denied.example\\r\\n\\r\\n"
s.sendall(one * 40)
s.settimeout(10)
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.count(b"HTTP/1.1 403"))
"""
    answered = run(net.runtime.exec("box", ["python3", "-c", flood]))
    assert answered.stdout.strip() == b"16"  # then the proxy closed the connection
    denied = [e for e in net.store.audit.entries() if e.action == "network" and e.outcome == "denied"]
    assert sum(e.repeats for e in denied) == 16 and all(len(e.argv[0]) < 2100 for e in denied)
    assert len(denied) == 1  # the same refusal sixteen times: one row that counts them


def test_repeated_refusals_are_one_audit_row_with_a_count(net, run) -> None:
    """A sandbox retrying a refused host is one audit row that counts the retries."""
    net.write_policy("")
    run(net.runtime.create("box"))
    retry = """
import socket
for _ in range(30):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"CONNECT denied.example:443 HTTP/1.1\\r\\nHost: denied.example:443\\r\\n\\r\\n")
    s.recv(65536)
    s.close()
"""
    assert run(net.runtime.exec("box", ["python3", "-c", retry])).exit_code == 0
    denied = [e for e in net.store.audit.entries() if e.action == "network" and e.outcome == "denied"]
    assert [(e.argv[0], e.repeats) for e in denied] == [("CONNECT denied.example:443", 30)]
    assert denied[0].last_ts is not None and denied[0].last_ts >= denied[0].ts


def test_the_proxys_threads_end_with_it(net, run) -> None:
    """The proxy's dial and tunnel threads are its own: close_all ends an open tunnel and
    every thread. (They were module-wide pools, alive until the interpreter exited.)"""
    s = net.servers
    net.write_policy(local_rule("tls", s.https_port))
    run(net.runtime.create("box"))
    hold = f"""
import socket, time
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b"CONNECT localhost:{s.https_port} HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
print(s.recv(100).split(b"\\r\\n")[0].decode(), flush=True)
time.sleep(30)
"""
    proxy = net.runtime.egress

    async def scenario() -> list:
        task = asyncio.ensure_future(net.runtime.exec("box", ["python3", "-c", hold], timeout=60))
        while proxy._counts.count("box") != 1:
            await asyncio.sleep(0.01)
        threads = [*proxy._pumps.front._threads, *proxy._pumps._back._threads, *proxy._dials._threads]
        assert any(t.is_alive() for t in threads)
        await proxy.close_all()
        while any(t.is_alive() for t in threads) or proxy._counts.count("box"):
            await asyncio.sleep(0.01)  # the test's timeout is the ceiling
        task.cancel()
        return threads

    assert run(scenario())
