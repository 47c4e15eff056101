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
_SHELL_OPERATORS = re.compile(r"[;&|`$<>(){}\n\\'\"*?\[\]~!#]")
# What splits a command line into words, for deny and ask: operators and blanks.
_SEPARATORS = re.compile(r"[\s;&|()<>{}=,!:]+")
# A command that runs code it builds (a variable, a substitution, an interpreter) may run
# anything: deny and ask prefix entries count it as a match, failing closed.
_OPAQUE = re.compile(
    r"[$`*?\[]|\b(eval|source|sh|ash|bash|dash|zsh|ksh|busybox|python[0-9.]*|perl|ruby|node|php|lua"
    r"|awk|gawk|mawk|nawk|xargs|find|parallel)\b"
)
_NOT_THE_COMMAND = frozenset(
    {"env", "command", "builtin", "exec", "nohup", "nice", "time", "timeout", "stdbuf"}
)


def allows_command(command: str) -> bool:
    """Whether an allow prefix entry may ever match this command: a plain one, no operators."""
    return not _SHELL_OPERATORS.search(command)


def _allows(prefix: list[str], command: str) -> bool:
    """An allow entry: the command is exactly these words plus plain arguments."""
    return allows_command(command) and command.split()[: len(prefix)] == prefix


def _mentions(prefix: list[str], command: str) -> bool:
    """A deny or ask entry: the command runs these words anywhere, under any spelling this
    can see through (a path, quotes, a backslash, env), or might (see _OPAQUE)."""
    if _OPAQUE.search(command):
        return True
    words = []
    for raw in _SEPARATORS.split(command):
        word = raw.replace("'", "").replace('"', "").replace("\\", "")
        if word and word not in _NOT_THE_COMMAND:
            words.append(word.rsplit("/", 1)[-1])  # /usr/bin/curl is curl
    return any(words[i : i + len(prefix)] == prefix for i in range(len(words)))


def _names(entries: list[str], tool: str, command: str | None, strict: bool) -> tuple[str, bool] | None:
    """The entry that names this call, and whether it is specific (`tool:prefix` or
    `tool=command`) rather than the whole tool or '*'. `strict` (allow) matches a prefix only
    as the start of a plain command, so `exec:git status` cannot allow `git status; curl
    evil`, and `exec=COMMAND` only that very command; otherwise (deny, ask) a prefix matches
    wherever the command might run it."""
    found: tuple[str, bool] | None = None
    for entry in entries:
        # `SERVER__*`: every tool of one MCP server (they are named SERVER__tool).
        if entry in (tool, "*") or (entry.endswith("__*") and tool.startswith(entry[:-1])):
            found = found or (entry, False)
            continue
        if command is not None and strict and entry.startswith(f"{tool}="):
            if entry[len(tool) + 1 :].split() == command.split() and allows_command(command):
                return entry, True
            continue
        name, sep, prefix = entry.partition(":")
        if not sep or name != tool or command is None or not prefix.split():
            continue
        if (_allows if strict else _mentions)(prefix.split(), command):
            return entry, True
    return found


def tool_decision(policy: Policy, tool: str, command: str | None = None) -> Decision:
    """deny beats everything; then ask beats allow, except that an allow for this very
    command (`exec:PREFIX`) beats an ask for the whole tool. A tool the policy does not name
    is denied (fail closed). `command` is the call's command line (exec)."""
    tools = policy.tools
    if found := _names(tools.deny, tool, command, strict=False):
        return Decision("deny", f"tools.deny: {found[0]}")
    asked = _names(tools.ask, tool, command, strict=False)
    allowed = _names(tools.allow, tool, command, strict=True)
    if asked and not (allowed and allowed[1] and not asked[1]):
        return Decision("ask", f"tools.ask: {asked[0]}")
    if allowed:
        return Decision("allow", f"tools.allow: {allowed[0]}")
    return Decision("deny", f"not in tools.allow: {tool}")
