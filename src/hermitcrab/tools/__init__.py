"""The tools the agent may call. Each is declared once (name, one line, risk, arguments
model); every one that touches the machine runs through the sandbox runtime."""

from hermitcrab.tools.base import HIGH_RISK, Args, Risk, Tool, ToolContext, ToolResult
from hermitcrab.tools.registry import builtin_tools

__all__ = ["HIGH_RISK", "Args", "Risk", "Tool", "ToolContext", "ToolResult", "builtin_tools"]
