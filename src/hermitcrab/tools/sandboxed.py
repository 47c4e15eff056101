"""The agent's tools that act on the machine: a shell command and file access, all inside
the agent's sandbox, each call checked against the policy's `tools` section and audited."""

from __future__ import annotations

from typing import Any, ClassVar

from hermitcrab.policy import tool_decision
from hermitcrab.sandbox.base import WORKSPACE_MOUNT, ExecResult
from hermitcrab.tools.base import Risk, ToolResult
from hermitcrab.tools.runtime import SandboxRuntime

MAX_FILE_BYTES = 1024 * 1024


class _SandboxTool:
    name = ""
    description = ""
    risk: Risk = "execute"
    parameters: ClassVar[dict[str, Any]] = {}

    def __init__(self, runtime: SandboxRuntime, sandbox: str) -> None:
        self.runtime = runtime
        self.sandbox = sandbox

    async def __call__(self, arguments: dict[str, Any], actor: str) -> ToolResult:
        managed = self.runtime.get(self.sandbox)
        decision = tool_decision(managed.policy, self.name)
        if not decision.allowed:
            why = (
                f"the policy holds '{self.name}' for a person's approval ({decision.rule}), and approvals "
                "are not available yet"
                if decision.verdict == "ask"
                else f"the policy denies '{self.name}' ({decision.rule})"
            )
            self.runtime.deny(self.sandbox, self._argv(arguments), actor, decision.rule, why)
            return ToolResult(False, f"denied: {why}")
        return await self.run(arguments, actor)

    def _argv(self, arguments: dict[str, Any]) -> list[str]:
        return []

    async def run(self, arguments: dict[str, Any], actor: str) -> ToolResult:
        raise NotImplementedError


def _describe(result: ExecResult) -> str:
    text = (result.stdout + result.stderr).decode(errors="replace")
    if result.truncated and result.output_file:
        text += f"\n[output truncated; the rest ({result.bytes_out} bytes in all) is in {result.output_file}]"
    if result.killed_by:
        text += f"\n[killed: the command exceeded process.{result.killed_by}]"
    elif result.exit_code:
        text += f"\n[exit code {result.exit_code}]"
    return text


class ExecTool(_SandboxTool):
    name = "exec"
    description = "Run a shell command in the workspace (inside the sandbox) and return its output."
    risk: Risk = "execute"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "A shell command line"}},
        "required": ["command"],
    }

    def _argv(self, arguments: dict[str, Any]) -> list[str]:
        return ["/bin/sh", "-c", str(arguments.get("command", ""))]

    async def run(self, arguments: dict[str, Any], actor: str) -> ToolResult:
        result = await self.runtime.exec(self.sandbox, self._argv(arguments), actor=actor)
        return ToolResult(result.exit_code == 0 and not result.killed_by, _describe(result), result.to_json())


def _inside(path: str) -> str:
    return path if path.startswith("/") else f"{WORKSPACE_MOUNT}/{path}"


class ReadFileTool(_SandboxTool):
    name = "read_file"
    description = "Read a text file; relative paths are in the workspace."
    risk: Risk = "read"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    }

    def _argv(self, arguments: dict[str, Any]) -> list[str]:
        return ["head", "-c", str(MAX_FILE_BYTES), "--", _inside(str(arguments.get("path", "")))]

    async def run(self, arguments: dict[str, Any], actor: str) -> ToolResult:
        # Read through the sandbox, so Landlock and the binds decide what is readable.
        result = await self.runtime.exec(self.sandbox, self._argv(arguments), actor=actor)
        if result.exit_code != 0:
            return ToolResult(False, result.stderr.decode(errors="replace").strip())
        return ToolResult(True, result.stdout.decode(errors="replace"))


class WriteFileTool(_SandboxTool):
    name = "write_file"
    description = "Write a text file (replacing it); relative paths are in the workspace."
    risk: Risk = "write"
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    }

    def _argv(self, arguments: dict[str, Any]) -> list[str]:
        return ["/bin/sh", "-c", 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"', "write_file",
                _inside(str(arguments.get("path", "")))]  # fmt: skip

    async def run(self, arguments: dict[str, Any], actor: str) -> ToolResult:
        content = str(arguments.get("content", "")).encode()
        result = await self.runtime.exec(self.sandbox, self._argv(arguments), actor=actor, stdin=content)
        if result.exit_code != 0:
            return ToolResult(False, (result.stderr.decode(errors="replace") or "write failed").strip())
        return ToolResult(True, f"wrote {len(content)} bytes to {arguments.get('path')}")


def sandbox_tools(runtime: SandboxRuntime, sandbox: str) -> list[_SandboxTool]:
    return [ExecTool(runtime, sandbox), ReadFileTool(runtime, sandbox), WriteFileTool(runtime, sandbox)]
