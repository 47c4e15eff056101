"""What the network policy says about one connection or one request. Pure functions.

Precedence: a matching `deny` beats `allow` beats `ask` (an `allow` is what a person's
"approve --always" writes, and it must settle the question an `ask` rule raises); with
no matching rule, the policy's default (deny, or ask). A wildcard covers exactly one first label:
'*.example.org' matches 'api.example.org', never 'example.org', 'a.b.example.org' or
'example.org.evil.net'.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from hermitcrab.policy.schema import HttpRule, NetworkPolicy, NetworkRule

PRECEDENCE = {"deny": 0, "allow": 1, "ask": 2}
# Cloud metadata endpoints are link-local or private already; named here for the message.
METADATA_IPS = frozenset({"169.254.169.254", "fd00:ec2::254", "100.100.100.200"})


@dataclass(frozen=True)
class NetDecision:
    verdict: str  # allow | ask | deny
    rule: NetworkRule | None
    reason: str

    @property
    def rule_name(self) -> str:
        return self.rule.name if self.rule else "network.default"


def host_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return host == pattern


def connection_decision(network: NetworkPolicy, host: str, port: int) -> NetDecision:
    matching = [r for r in network.rules if port in r.ports and any(host_matches(h, host) for h in r.hosts)]
    if not matching:
        return NetDecision(
            network.default, None, f"no rule matches {host}:{port}; network.default is {network.default}"
        )
    rule = min(matching, key=lambda r: PRECEDENCE[r.access])
    return NetDecision(rule.access, rule, f"rule '{rule.name}' says {rule.access} for {host}:{port}")


@lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(f"^{out}$")


def _http_rule_matches(
    rule: HttpRule, method: str, path: str, query: dict[str, list[str]], every_value: bool
) -> bool:
    """every_value: an allow rule's query must match each value a key is given (else
    ?owner=me&owner=evil would pass); a deny rule matches on any one of them."""
    if "*" not in rule.methods and method.upper() not in rule.methods:
        return False
    if not any(_glob(p).match(path) for p in rule.paths):
        return False
    quantifier = all if every_value else any
    return all(
        bool(values := query.get(k, [])) and quantifier(_glob(v).match(value) for value in values)
        for k, v in rule.query.items()
    )


UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def path_problem(path: str) -> str | None:
    """Why a path cannot be matched against L7 rules as it is written, or None. A server
    would read /a/../b, /a//b, /%61 or /a%2Fb as another path than the rule saw; such
    paths are refused rather than guessed at."""
    if not path.startswith("/"):
        return "it does not start with /"
    if "\\" in path:
        return "it holds a backslash"
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment in (".", ".."):
            return f"it holds a '{segment}' segment"
        if not segment and index < len(segments) - 1:
            return "it holds an empty segment (//)"
    for match in re.finditer(r"%([0-9A-Fa-f]{2})", path):
        char = chr(int(match.group(1), 16))
        if char in UNRESERVED or char in "/\\":
            return f"it percent-encodes {char!r}"
    return None


def request_decision(rule: NetworkRule, method: str, path: str, query: dict[str, list[str]]) -> NetDecision:
    """L7: a deny rule wins; with allow rules, the request must match one of them."""
    for deny in rule.deny:
        if _http_rule_matches(deny, method, path, query, every_value=False):
            return NetDecision("deny", rule, f"rule '{rule.name}' denies {method} {path}")
    if rule.allow and not any(
        _http_rule_matches(a, method, path, query, every_value=True) for a in rule.allow
    ):
        return NetDecision("deny", rule, f"rule '{rule.name}' allows no {method} {path}")
    return NetDecision("allow", rule, f"rule '{rule.name}' allows {method} {path}")


def address_problem(ip: str, rule: NetworkRule | None) -> str | None:
    """Why the proxy must not connect to `ip`, or None. Loopback, private, link-local and
    metadata addresses are refused unless the rule names them in allowed_ips."""
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = str(address)
    if rule is not None and any(address in ipaddress.ip_network(n, strict=False) for n in rule.allowed_ips):
        return None
    if ip in METADATA_IPS:
        kind = "a cloud metadata address"
    elif address.is_loopback:
        kind = "a loopback address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif address.is_private:
        kind = "a private address"
    elif address.is_multicast or address.is_reserved or address.is_unspecified:
        kind = "a reserved address"
    else:
        return None
    return f"{ip} is {kind}; only a rule listing it in allowed_ips may reach it"


def credential_placeholder(name: str) -> str:
    """What a sandbox holds in place of a credential: the proxy swaps in the real value on
    the way out, for the endpoints the credential is bound to."""
    return f"hermitcrab-placeholder-{name}"


def credential_env(name: str) -> str:
    return "HERMITCRAB_CREDENTIAL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
