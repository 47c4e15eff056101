"""Matching rules: what the policy says about one request. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hermitcrab.policy.schema import Policy

Verdict = Literal["allow", "ask", "deny"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str  # which part of the policy decided, for the audit log

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"


def tool_decision(policy: Policy, tool: str) -> Decision:
    """deny beats ask beats allow; a tool the policy does not name is denied (fail closed)."""
    tools = policy.tools
    if tool in tools.deny or "*" in tools.deny:
        return Decision("deny", f"tools.deny: {tool}")
    if tool in tools.ask or "*" in tools.ask:
        return Decision("ask", f"tools.ask: {tool}")
    if tool in tools.allow or "*" in tools.allow:
        return Decision("allow", f"tools.allow: {tool}")
    return Decision("deny", f"not in tools.allow: {tool}")
