"""Matching rules: what the policy says about one request. Pure functions."""

from __future__ import annotations

import re
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


# A prefix rule allows a command only when nothing can follow the prefix but arguments.
_SHELL_OPERATORS = re.compile(r"[;&|`$<>(){}\n\\]")


def _names(entries: list[str], tool: str, command: str | None, strict: bool) -> str | None:
    """The entry that names this call: the tool, '*', or `tool:prefix` whose words begin the
    command. `strict` (for allow) refuses a prefix match on a command with shell operators,
    so `exec:git status` cannot allow `git status; curl evil`."""
    for entry in entries:
        if entry in (tool, "*"):
            return entry
        name, sep, prefix = entry.partition(":")
        if not sep or name != tool or command is None:
            continue
        words, prefix_words = command.split(), prefix.split()
        if prefix_words and words[: len(prefix_words)] == prefix_words:
            if strict and _SHELL_OPERATORS.search(command):
                continue
            return entry
    return None


def tool_decision(policy: Policy, tool: str, command: str | None = None) -> Decision:
    """deny beats ask beats allow; a tool the policy does not name is denied (fail closed).
    `command` is the call's command line, for `tool:prefix` entries (exec)."""
    tools = policy.tools
    if entry := _names(tools.deny, tool, command, strict=False):
        return Decision("deny", f"tools.deny: {entry}")
    if entry := _names(tools.ask, tool, command, strict=False):
        return Decision("ask", f"tools.ask: {entry}")
    if entry := _names(tools.allow, tool, command, strict=True):
        return Decision("allow", f"tools.allow: {entry}")
    return Decision("deny", f"not in tools.allow: {tool}")
