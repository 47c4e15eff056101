"""The built-in tools that need only the runtime. Tools that need the loop itself
(spawn_agent) are added by the agent."""

from __future__ import annotations

from hermitcrab.tools.base import Tool
from hermitcrab.tools.files import EditFileTool, ListFilesTool, ReadFileTool, WriteFileTool
from hermitcrab.tools.memory import MemorySearchTool, MemoryWriteTool
from hermitcrab.tools.messaging import SendMessageTool
from hermitcrab.tools.schedule import ScheduleTool
from hermitcrab.tools.shell import ExecTool
from hermitcrab.tools.web import WebFetchTool


def builtin_tools() -> dict[str, Tool]:
    tools: list[Tool] = [
        ExecTool(),
        ReadFileTool(),
        WriteFileTool(),
        EditFileTool(),
        ListFilesTool(),
        WebFetchTool(),
        SendMessageTool(),
        ScheduleTool(),
        MemorySearchTool(),
        MemoryWriteTool(),
    ]
    return {tool.name: tool for tool in tools}
