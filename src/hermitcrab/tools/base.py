"""The tool seam: each tool is declared once (a name, one line, a risk, an arguments
model) and the schema the model sees is generated from that model, never written twice."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from hermitcrab.inference.base import ToolSpec

if TYPE_CHECKING:
    from hermitcrab.approvals import Approvals
    from hermitcrab.runtime import SandboxRuntime
    from hermitcrab.store import Store

# What a tool can do. The policy and the injection guard decide by it.
Risk = Literal["read", "write", "exec", "network", "external"]
HIGH_RISK: frozenset[str] = frozenset({"exec", "network", "external"})


class Args(BaseModel):
    """A tool's arguments. Unknown keys are errors: a model's typo must not pass silently."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ToolResult:
    content: str
    error: bool = False
    # Where untrusted content in this result came from (a URL, a file); None: trusted.
    taint: str | None = None
    data: dict[str, Any] | None = None


@dataclass
class ToolContext:
    """What a tool call may reach: its agent's sandbox, workspace and store, nothing more."""

    agent: str
    session_id: str
    sandbox: str
    runtime: SandboxRuntime
    store: Store
    workspace: Path  # the agent's workspace on the host (mounted at /workspace inside)
    actor: str  # who the audit log names
    # Where the untrusted content this turn had read came from, when this call was made.
    taint: tuple[str, ...] = ()
    present: bool = True  # a person can answer an approval now
    call_id: str = ""
    # Send a message to the session (what send_message does); set by the loop.
    post: Callable[[str], Awaitable[None]] | None = None
    # The inbox, for a tool that must ask the person mid-call (an MCP server's question).
    approvals: Approvals | None = None
    # Shows how far a long call has come (live, not logged): an MCP server's progress.
    progress: Callable[[dict[str, Any]], None] | None = None

    @property
    def tainted(self) -> bool:
        return bool(self.taint)


class Tool:
    name: ClassVar[str]
    description: ClassVar[str]  # one line: long guidance lives in the tool's errors and docs
    risk: ClassVar[Risk]
    Args: ClassVar[type[Args]]
    # Its output shows workspace content it does not name (a command's output, a listing):
    # untrusted unless everything in the workspace is the agent's own, untainted work.
    reads_workspace: ClassVar[bool] = False

    @property
    def read_only(self) -> bool:
        """Safe to run beside others, and to run again after a crash."""
        return self.risk == "read"

    def spec(self) -> ToolSpec:
        """Built once per tool (every model call offers it; pydantic's schema generation is
        not cheap). Nothing downstream changes it."""
        made = self.__dict__.get("_spec")
        if made is None:
            made = self.__dict__["_spec"] = ToolSpec(self.name, self.description, schema_of(self.Args))
        return made

    def summary(self, args: Args) -> str:
        """The call in plain words, for a person deciding on it."""
        shown = ", ".join(f"{k}={_short(v)}" for k, v in args.model_dump(exclude_defaults=True).items())
        return f"{self.name}({shown})"

    def details(self, args: Args) -> str | None:
        """What a person deciding on the call must see beyond the summary (what it writes)."""
        return None

    def command(self, args: Args) -> str | None:
        """The command line a prefix rule in the policy matches (exec), else None."""
        return None

    def written_path(self, args: Args) -> str | None:
        """The workspace path this call writes, if it writes one."""
        return None

    def read_path(self, args: Args) -> str | None:
        """The workspace path whose content this call returns, if any."""
        return None

    async def run(self, args: Any, ctx: ToolContext) -> ToolResult:
        raise NotImplementedError


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of an arguments model, without what costs tokens and says nothing
    (pydantic's titles)."""
    schema = copy.deepcopy(model.model_json_schema())
    _strip_titles(schema)
    schema.setdefault("properties", {})
    return schema


def _strip_titles(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("title", None)
        # An optional argument reads as its type, not as anyOf [type, null] with a null default.
        options = node.get("anyOf")
        optional = isinstance(options, list) and len(options) == 2 and {"type": "null"} in options
        if optional and node.get("default", ...) is None:
            node.pop("anyOf")
            node.pop("default")
            node.update(next(o for o in options if o != {"type": "null"}))
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _strip_titles(prop)
            else:
                _strip_titles(value)
    elif isinstance(node, list):
        for item in node:
            _strip_titles(item)
