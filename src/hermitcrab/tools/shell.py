"""`exec`: a shell command in the agent's sandbox."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from pydantic import Field

from hermitcrab.runtime import WORKSPACE_MOUNT
from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult

if TYPE_CHECKING:
    from hermitcrab.runtime import ExecResult


class ExecArgs(Args):
    command: str = Field(description="shell command line")
    timeout: float | None = Field(None, gt=0, description="seconds; at most the policy's limit")
    cwd: str | None = Field(None, description="folder, relative to the workspace")


class ExecTool(Tool):
    name = "exec"
    description = "Run a shell command in the workspace, inside the sandbox."
    risk: Risk = "exec"
    Args = ExecArgs
    reads_workspace = True

    def command(self, args: ExecArgs) -> str:
        return args.command

    def summary(self, args: ExecArgs) -> str:
        return f"exec: {args.command}" + (f" (in {args.cwd})" if args.cwd else "")

    async def run(self, args: ExecArgs, ctx: ToolContext) -> ToolResult:
        limit = ctx.runtime.get(ctx.sandbox).policy.process.timeout_seconds
        timeout = min(args.timeout, limit) if args.timeout else None
        result = await ctx.runtime.exec(
            ctx.sandbox,
            ["/bin/sh", "-c", args.command],
            actor=ctx.actor,
            cwd=inside(args.cwd),
            timeout=timeout,
        )
        return ToolResult(
            describe(result), error=bool(result.exit_code or result.killed_by), data=result.to_json()
        )


def inside(path: str | None) -> str | None:
    """A path as the sandbox sees it, normalised: relative ones are in the workspace. The
    guard and the taint marks name files by this same path (see `workspace_path`)."""
    if path is None:
        return None
    normal = posixpath.normpath(path if path.startswith("/") else f"{WORKSPACE_MOUNT}/{path}")
    return "/" + normal.lstrip("/")  # POSIX keeps a leading '//': one name, one spelling


def workspace_path(path: str) -> str | None:
    """The file as the workspace names it (`notes/a.md`, or `.` for the workspace itself),
    or None when the path is outside the workspace."""
    full = inside(path) or ""
    if full == WORKSPACE_MOUNT:
        return "."
    if full.startswith(WORKSPACE_MOUNT + "/"):
        return full[len(WORKSPACE_MOUNT) + 1 :]
    return None


def describe(result: ExecResult) -> str:
    text = (result.stdout + result.stderr).decode(errors="replace")
    if result.truncated and result.output_file:
        text += f"\n[output truncated; the rest ({result.bytes_out} bytes in all) is in {result.output_file}]"
    if result.killed_by:
        text += f"\n[killed: the command exceeded process.{result.killed_by}]"
    elif result.exit_code:
        text += f"\n[exit code {result.exit_code}]"
    return text
