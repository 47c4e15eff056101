"""Taint and the injection guard.

A turn is tainted once it has read content from the web, a file the agent did not write
in an untainted turn, or a message from anyone but the owner. While tainted, calls that
reach beyond the workspace (exec, network, external), writes to the persona files and
skills/, and a sub-agent with more tools than its parent wait for a person, whatever
the policy allows. Read-only tools and other workspace writes still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hermitcrab.config.paths import WORKSPACE_FILES
from hermitcrab.tools.base import HIGH_RISK, Args, Tool
from hermitcrab.tools.shell import workspace_path

PERSONA_FILES = frozenset({*WORKSPACE_FILES, "HEARTBEAT.md"})
OWNER = "owner"  # the sender of a message from the agent's own person (anyone else taints)
EARLIER = "an earlier turn that read "


def earlier(source: str) -> str:
    """A source of taint seen again in a later turn, named once however often it returns."""
    return source if source.startswith(EARLIER) else f"{EARLIER}{source}"


GUARDED_FOLDERS = ("skills",)


@dataclass
class Taint:
    sources: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def add(self, source: str) -> None:
        if source not in self.sources:
            self.sources.append(source)

    def describe(self) -> str:
        return ", ".join(self.sources)


def is_guarded_path(path: str | None) -> bool:
    """The persona, skills/, and hidden files and folders (.git/config, .bashrc, a .pth):
    what programs and the agent itself read as instructions."""
    if path is None:
        return False
    if path in PERSONA_FILES or any(path == f or path.startswith(f + "/") for f in GUARDED_FOLDERS):
        return True
    return any(part.startswith(".") and part not in (".", "..") for part in path.split("/"))


def hold_reason(tool: Tool, args: Args, taint: Taint, offered: set[str]) -> str | None:
    """Why the guard holds this call for a person, or None to let the policy decide."""
    if not taint:
        return None
    read = f"this turn read untrusted content ({taint.describe()})"
    if tool.risk in HIGH_RISK:
        return f"{read}, and '{tool.name}' is a {tool.risk} tool"
    written = tool.written_path(args)
    if written is not None:
        path = workspace_path(written)
        if path is None:
            return f"{read}, and {written} is outside the workspace"
        if is_guarded_path(path):
            return f"{read}, and {written} shapes the agent itself or the programs it runs"
    escalates = getattr(tool, "escalates", None)
    if escalates is not None and escalates(args, offered):
        return f"{read}, and the sub-agent asks for more tools"
    return None
