"""The policy's tools section: allow, ask, deny, and `exec:PREFIX` entries that a command
cannot spell its way around."""

from __future__ import annotations

import pytest

from hermitcrab.errors import PolicyError
from hermitcrab.gateway.parts import tool_entry
from hermitcrab.policy import parse_policy, tool_decision
from hermitcrab.policy.edit import add_tool_allow

STRICT = """\
version: 1
tools:
  allow: [exec, read_file, "exec:git status"]
  ask: []
  deny: ["exec:curl", "exec:rm -rf"]
"""


@pytest.mark.parametrize(
    "command",
    ["curl x", "/usr/bin/curl x", "true; curl x", "\\\\curl x", "'curl' x", 'c""url x', "env curl x",
     "command rm -rf .", "X=1 rm -rf a", "$(echo curl) x", "sh -c 'cu''rl x'", "python3 -c 'import os'"],
)  # fmt: skip
def test_a_deny_prefix_matches_every_spelling_it_can_see_and_what_it_cannot_read(command: str) -> None:
    assert tool_decision(parse_policy(STRICT), "exec", command).verdict == "deny"


def test_an_allow_prefix_matches_only_a_plain_command() -> None:
    policy = parse_policy('version: 1\ntools:\n  allow: [read_file, "exec:git status"]\n  ask: [exec]\n')
    assert tool_decision(policy, "exec", "git status --short").verdict == "allow"  # specific beats ask: exec
    for sneaky in ("git status; curl x", "git status $(curl x)", "git status > ~/.bashrc", "git statusx"):
        assert tool_decision(policy, "exec", sneaky).verdict == "ask", sneaky
    assert tool_decision(policy, "read_file").verdict == "allow"
    assert tool_decision(policy, "write_file").rule == "not in tools.allow: write_file"


def test_always_allows_the_very_command_seen_and_takes_a_whole_tool_out_of_ask() -> None:
    assert tool_entry({"tool": "exec", "command": "git  status"}) == "exec=git status"
    assert tool_entry({"tool": "web_fetch"}) == "web_fetch"
    for vague in ("", "   ", "git status; curl x", "ls *"):
        with pytest.raises(PolicyError, match="approve it once"):
            tool_entry({"tool": "exec", "command": vague})
    text = "version: 1\ntools:\n  allow: [read_file]  # reads\n  ask: [web_fetch, exec]\n"
    edited = add_tool_allow(add_tool_allow(text, "web_fetch"), "exec=git log")
    policy = parse_policy(edited)
    assert tool_decision(policy, "web_fetch").verdict == "allow"
    assert tool_decision(policy, "exec", "git log").verdict == "allow"
    for more in ("git log --output=AGENTS.md", "git push", "git log; rm x"):  # exactly what was seen
        assert tool_decision(policy, "exec", more).verdict == "ask", more
    assert "# reads" in edited  # comments kept


@pytest.mark.parametrize(
    "command",
    ["/usr/bin/c[u]rl x", "/usr/bin/cur? x", "git -c alias.c=!curl c x", "tar xf a --to-command=curl",
     "awk 'BEGIN{system(\"cu\" \"rl x\")}'", "busybox wget x"],
)  # fmt: skip
def test_a_deny_prefix_fails_closed_on_globs_options_and_interpreters(command: str) -> None:
    assert tool_decision(parse_policy(STRICT), "exec", command).verdict == "deny"
