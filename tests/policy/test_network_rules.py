"""The network policy: the issue's example file as written, host matching, precedence, L7,
and the addresses the proxy refuses (SSRF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermitcrab.errors import PolicyError
from hermitcrab.policy import load_policy, parse_policy
from hermitcrab.policy.network import (
    address_problem,
    connection_decision,
    host_matches,
    normalise_path,
    request_decision,
)

EXAMPLE = """\
version: 1
network:
  default: deny
  rules:
    - name: local-test
      hosts: ["localhost"]
      ports: [8765]
      allowed_ips: ["127.0.0.1"]
      access: allow
    - name: ask-first
      hosts: ["*.example.org"]
      ports: [443]
      access: ask
    - name: github-read
      hosts: ["api.github.com"]
      ports: [443]
      tls: terminate
      credentials: github
      allow: [{methods: [GET], paths: ["/repos/**"]}]
      deny: [{methods: ["*"], paths: ["/repos/*/*/actions/**"]}]
"""


@pytest.fixture
def example(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE)
    return load_policy(path)


def test_the_example_is_accepted_and_other_sections_keep_their_defaults(example) -> None:
    assert [r.name for r in example.network.rules] == ["local-test", "ask-first", "github-read"]
    assert example.process.run_as_uid == 1000 and "/usr" in example.filesystem.read_only
    assert example.network.approval_timeout_seconds == 120


@pytest.mark.parametrize(
    ("host", "port", "verdict", "rule"),
    [
        ("localhost", 8765, "allow", "local-test"),
        ("localhost", 8766, "deny", "network.default"),
        ("api.example.org", 443, "ask", "ask-first"),
        ("API.Example.ORG.", 443, "ask", "ask-first"),
        ("example.org", 443, "deny", "network.default"),
        ("a.b.example.org", 443, "deny", "network.default"),
        ("example.org.evil.net", 443, "deny", "network.default"),
        ("evilexample.org", 443, "deny", "network.default"),
        ("api.github.com", 443, "allow", "github-read"),
        ("api.github.com", 80, "deny", "network.default"),
    ],
)
def test_connection_decisions(example, host: str, port: int, verdict: str, rule: str) -> None:
    decision = connection_decision(example.network, host, port)
    assert (decision.verdict, decision.rule_name) == (verdict, rule)


def test_wildcards_cover_exactly_one_first_label() -> None:
    assert host_matches("*.example.com", "a.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("*.example.com", "example.com.evil.net")
    assert not host_matches("*.example.com", "x.y.example.com")
    assert not host_matches("*.example.com", ".example.com")


@pytest.mark.parametrize("bad", ["*.com", "a.*.example.com", "*foo.example.com", "ex*.com", "a..b"])
def test_bad_wildcards_are_refused(bad: str) -> None:
    with pytest.raises(PolicyError, match="host"):
        parse_policy(f"version: 1\nnetwork:\n  rules:\n    - name: r\n      hosts: ['{bad}']\n")


def test_deny_beats_allow_beats_ask() -> None:
    def rules(*accesses: str):
        items = "".join(
            f"    - name: r{i}\n      hosts: [h.example.com]\n      access: {a}\n"
            for i, a in enumerate(accesses)
        )
        return parse_policy(f"version: 1\nnetwork:\n  rules:\n{items}").network

    assert connection_decision(rules("allow", "deny", "ask"), "h.example.com", 443).verdict == "deny"
    assert connection_decision(rules("ask", "allow"), "h.example.com", 443).verdict == "allow"
    assert connection_decision(rules("ask"), "h.example.com", 443).verdict == "ask"


def test_default_ask() -> None:
    network = parse_policy("version: 1\nnetwork:\n  default: ask\n").network
    decision = connection_decision(network, "anything.example", 443)
    assert (decision.verdict, decision.rule_name) == ("ask", "network.default")


@pytest.mark.parametrize(
    ("method", "path", "verdict"),
    [
        ("GET", "/repos/a/b", "allow"),
        ("GET", "/repos/a/b/issues/1", "allow"),
        ("POST", "/repos/a/b", "deny"),
        ("GET", "/repos/a/b/actions/runs", "deny"),
        ("GET", "/user", "deny"),
    ],
)
def test_l7_rules_deny_wins(example, method: str, path: str, verdict: str) -> None:
    assert request_decision(example.network.rules[2], method, path, {}).verdict == verdict


def test_l7_query_matching() -> None:
    rule = parse_policy(
        "version: 1\nnetwork:\n  rules:\n    - name: q\n      hosts: [h.example.com]\n"
        "      allow: [{paths: ['/search'], query: {q: 'kelp*'}}]\n"
    ).network.rules[0]
    assert request_decision(rule, "GET", "/search", {"q": ["kelp forests"]}).verdict == "allow"
    assert request_decision(rule, "GET", "/search", {"q": ["secrets"]}).verdict == "deny"
    assert request_decision(rule, "GET", "/search", {}).verdict == "deny"
    # An allow rule needs every value of the key to match; one good value is not enough.
    assert request_decision(rule, "GET", "/search", {"q": ["kelp", "secrets"]}).verdict == "deny"


def test_l7_deny_query_matches_any_value() -> None:
    rule = parse_policy(
        "version: 1\nnetwork:\n  rules:\n    - name: q\n      hosts: [h.example.com]\n"
        "      deny: [{paths: ['/**'], query: {owner: evil}}]\n"
    ).network.rules[0]
    assert request_decision(rule, "GET", "/x", {"owner": ["me", "evil"]}).verdict == "deny"
    assert request_decision(rule, "GET", "/x", {"owner": ["me"]}).verdict == "allow"


@pytest.mark.parametrize(
    "path",
    ["/repos/me/../../admin", "/repos/./me", "/repos//admin", "/repos/me/%2e%2e/admin", "/repos/a%2Fb",
     "/repos/a%5cb", "/repos\\admin", "repos/me", "/repos/..;/admin", "/repos/a/%252e%252e/x", "/a/.;x/b",
     "/admin;x", "/~user/x;v=1", "/admin%20", "/%20admin", "/admin%09", "/a%00b"],
)  # fmt: skip
def test_paths_a_server_would_read_otherwise_are_refused(path: str) -> None:
    assert normalise_path(path)[1] is not None


@pytest.mark.parametrize(
    ("path", "normal"),
    [("/", "/"), ("/repos/me/", "/repos/me/"), ("/repos/me/x%20y", "/repos/me/x%20y"),
     ("/caf%c3%a9", "/caf%C3%A9"), ("/a.b/c~d", "/a.b/c~d"), ("/repos/%61dmin", "/repos/admin"),
     ("/%7Euser/x", "/~user/x")],
)  # fmt: skip
def test_plain_paths_pass_normalised(path: str, normal: str) -> None:
    assert normalise_path(path) == (normal, None)


def test_deny_covers_the_bare_prefix_and_any_case() -> None:
    rule = parse_policy(
        "version: 1\nnetwork:\n  rules:\n    - name: r\n      hosts: [h.example.com]\n      tls: terminate\n"
        "      deny: [{paths: ['/repos/*/*/hooks/**']}]\n"
    ).network.rules[0]
    for path in ("/repos/o/r/hooks", "/repos/o/r/hooks/1", "/repos/o/r/HOOKS/1"):
        assert request_decision(rule, "POST", path, {}).verdict == "deny", path
    assert request_decision(rule, "POST", "/repos/o/r/hooksmith", {}).verdict == "allow"


@pytest.mark.parametrize(
    "ip",
    ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.3.4", "192.168.1.1", "169.254.169.254",
     "fe80::1", "fd00:ec2::254", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_ssrf_targets_are_refused_without_allowed_ips(ip: str) -> None:
    assert address_problem(ip, None) is not None


def test_allowed_ips_opens_only_what_it_names(example) -> None:
    local = example.network.rules[0]
    assert address_problem("127.0.0.1", local) is None
    assert address_problem("127.0.0.2", local) is not None
    assert address_problem("8.8.8.8", None) is None


def test_credentials_need_tls_termination() -> None:
    with pytest.raises(PolicyError, match="set tls: terminate"):
        parse_policy(
            "version: 1\nnetwork:\n  rules:\n    - name: c\n      hosts: [a.b.c]\n      credentials: x\n"
        )


def test_rule_names_are_unique() -> None:
    text = (
        "version: 1\nnetwork:\n  rules:\n    - {name: a, hosts: [x.y.z]}\n    - {name: a, hosts: [y.y.z]}\n"
    )
    with pytest.raises(PolicyError, match="repeated: a"):
        parse_policy(text)


@pytest.mark.parametrize(
    "ip",
    ["100.64.0.1", "168.63.129.16", "192.0.0.8", "198.18.0.1", "2001:db8::1", "fc00::1",
     "2002:7f00:1::", "64:ff9b::7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "::ffff:10.0.0.1"],
)  # fmt: skip
def test_special_purpose_addresses_and_ipv6_that_carry_them_are_refused(ip: str) -> None:
    from hermitcrab.policy.network import address_problem

    assert address_problem(ip, None) is not None


def test_public_addresses_pass_the_address_filter() -> None:
    from hermitcrab.policy.network import address_problem

    assert address_problem("8.8.8.8", None) is None and address_problem("2606:4700::1111", None) is None


def test_the_most_specific_rule_wins_not_the_first_listed() -> None:
    """A broad rule listed first once switched a later rule's L7 checks and credential off."""
    network = parse_policy(
        "version: 1\nnetwork:\n  rules:\n"
        "    - {name: broad, hosts: ['*.github.com'], ports: [443]}\n"
        "    - {name: api, hosts: [api.github.com], ports: [443], tls: terminate,"
        " allow: [{methods: [GET], paths: ['/repos/**']}]}\n"
    ).network
    assert connection_decision(network, "api.github.com", 443).rule.name == "api"
    assert connection_decision(network, "raw.github.com", 443).rule.name == "broad"
