"""The tool seam: a name, a JSON schema for its arguments, a risk, and one async call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Risk = Literal["read", "write", "execute"]


@dataclass
class ToolResult:
    ok: bool
    output: str
    data: dict[str, Any] | None = None


class Tool(Protocol):
    name: str
    description: str
    risk: Risk
    parameters: dict[str, Any]  # JSON schema of the arguments

    async def __call__(self, arguments: dict[str, Any], actor: str) -> ToolResult: ...
