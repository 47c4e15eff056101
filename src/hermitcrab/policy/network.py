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
# Azure's wire server (168.63.129.16) is a public address that answers only from inside.
METADATA_IPS = frozenset({"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
    rule = min(matching, key=lambda r: _precedence(r, host))
    return NetDecision(rule.access, rule, f"rule '{rule.name}' says {rule.access} for {host}:{port}")


def _precedence(rule: NetworkRule, host: str) -> tuple[int, bool, bool]:
    """deny, then allow, then ask; between rules of one access the most specific wins: a host
    named exactly over a wildcard, then a rule with L7 checks or a credential over a bare
    one (a broad rule listed first must not switch a later rule's checks off); then order."""
    exact = host in rule.hosts
    constrained = bool(rule.allow or rule.deny or rule.credentials)
    return PRECEDENCE[rule.access], not exact, not constrained


@lru_cache(maxsize=512)
def _glob(pattern: str, fold_case: bool = False) -> re.Pattern[str]:
    """* is one segment's worth, ** any depth; a trailing /** covers the prefix itself
    too (deny /hooks/** must refuse /hooks)."""
    tail = ""
    if pattern.endswith("/**"):
        pattern, tail = pattern[:-3], "(?:/.*)?"
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
    return re.compile(f"^{out}{tail}$", re.IGNORECASE if fold_case else 0)


def _http_rule_matches(
    rule: HttpRule, method: str, path: str, query: dict[str, list[str]], deny: bool
) -> bool:
    """An allow rule's query must match each value a key is given (else
    ?owner=me&owner=evil would pass), case and all; a deny rule matches on any one value,
    in any case (a server that ignores case must not slip past it)."""
    if "*" not in rule.methods and method.upper() not in rule.methods:
        return False
    if not any(_glob(p, deny).match(path) for p in rule.paths):
        return False
    quantifier = any if deny else all
    return all(
        bool(values := query.get(k, [])) and quantifier(_glob(v, deny).match(value) for value in values)
        for k, v in rule.query.items()
    )


UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalise_path(path: str) -> tuple[str, str | None]:
    """The path L7 rules see, and the proxy sends on: percent-encoded unreserved characters
    decoded (RFC 3986 says /%61 is /a), every other escape's hex upper-cased. With it, why
    it cannot be matched as written (None if it can): a server would read /a/../b, /a//b,
    /a/..;/b, /a%2Fb or a double-encoded %252e as another path than the rule saw, so such
    paths are refused rather than guessed at."""
    if not path.startswith("/"):
        return path, "it does not start with /"
    if "\\" in path:
        return path, "it holds a backslash"

    def unescape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else f"%{match.group(1).upper()}"

    path = re.sub(r"%([0-9A-Fa-f]{2})", unescape, path)
    for encoded, meaning in (("%2F", "an encoded /"), ("%5C", "an encoded \\"), ("%25", "an encoded %")):
        if encoded in path:
            return path, f"it holds {meaning} ({encoded})"
    if re.search(r"%(?:[01][0-9A-F]|7F)", path):
        return path, "it holds an encoded control character"
    if re.search(r"%20(?:/|$)|/%20", path):  # /admin%20 is /admin to a server that trims
        return path, "a segment begins or ends with an encoded space (a server may trim it)"
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        if ";" in segment:  # servers differ: some drop ;parameters (/admin;x is /admin), some keep them
            return path, f"it holds a ';' parameter in '{segment}'"
        if segment in (".", ".."):
            return path, f"it holds a '{segment}' segment"
        if not segment and index < len(segments) - 1:
            return path, "it holds an empty segment (//)"
    return path, None


def request_decision(rule: NetworkRule, method: str, path: str, query: dict[str, list[str]]) -> NetDecision:
    """L7: a deny rule wins; with allow rules, the request must match one of them."""
    for deny in rule.deny:
        if _http_rule_matches(deny, method, path, query, deny=True):
            return NetDecision("deny", rule, f"rule '{rule.name}' denies {method} {path}")
    if rule.allow and not any(_http_rule_matches(a, method, path, query, deny=False) for a in rule.allow):
        return NetDecision("deny", rule, f"rule '{rule.name}' allows no {method} {path}")
    return NetDecision("allow", rule, f"rule '{rule.name}' allows {method} {path}")


def address_problem(ip: str, rule: NetworkRule | None) -> str | None:
    """Why the proxy must not connect to `ip`, or None. Loopback, private, link-local,
    metadata and every other special-purpose address of IANA's registries (netaddr keeps
    them) are refused unless the rule names them in allowed_ips; so is an IPv6 address that
    carries one of those inside it (mapped, 6to4, Teredo, NAT64)."""
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = str(address)
    if rule is not None and any(address in ipaddress.ip_network(n, strict=False) for n in rule.allowed_ips):
        return None
    for candidate in (address, *_carried(address)):
        kind = _special(candidate)
        if kind is not None:
            inside = "" if candidate == address else f", which carries {candidate}"
            return f"{ip} is {kind}{inside}; only a rule listing it in allowed_ips may reach it"
    return None


def _carried(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one leads to: 6to4, Teredo (server and client), NAT64."""
    if address.version != 6:
        return []
    carried = [address.sixtofour] if address.sixtofour else []
    if address.teredo:
        carried += list(address.teredo)
    if address in NAT64:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return carried


def _special(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    import netaddr

    if str(address) in METADATA_IPS:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "a reserved address"
    if not netaddr.IPAddress(str(address)).is_global():
        return "a special-purpose address (IANA registry)"
    return None


def credential_placeholder(name: str) -> str:
    """What a sandbox holds in place of a credential: the proxy swaps in the real value on
    the way out, for the endpoints the credential is bound to."""
    return f"hermitcrab-placeholder-{name}"


def credential_env(name: str) -> str:
    return "HERMITCRAB_CREDENTIAL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
