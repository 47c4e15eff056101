"""Workspace files: read, write, edit (exact search and replace), list. Every one runs
inside the sandbox, so the binds and Landlock decide what is reachable, never the host."""

from __future__ import annotations

from pydantic import Field

from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult
from hermitcrab.tools.shell import inside

MAX_FILE_BYTES = 1024 * 1024
MAX_LISTED = 500


class PathArgs(Args):
    path: str = Field(description="relative to the workspace")


class WriteArgs(PathArgs):
    content: str


class EditArgs(PathArgs):
    old: str = Field(description="exact text to replace; must occur once")
    new: str


class ListArgs(Args):
    path: str = Field(".", description="folder, relative to the workspace")


async def _read(ctx: ToolContext, path: str) -> tuple[bool, str]:
    argv = ["head", "-c", str(MAX_FILE_BYTES + 1), "--", inside(path) or ""]
    result = await ctx.runtime.exec(ctx.sandbox, argv, actor=ctx.actor)
    if result.exit_code != 0:
        return False, result.stderr.decode(errors="replace").strip() or f"cannot read {path}"
    data = result.stdout
    if len(data) > MAX_FILE_BYTES:
        return False, f"{path} is larger than {MAX_FILE_BYTES} bytes; read a part with exec (head, sed -n)"
    return True, data.decode(errors="replace")


async def _write(ctx: ToolContext, path: str, content: str) -> ToolResult:
    argv = [
        "/bin/sh",
        "-c",
        'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"',
        "write_file",
        inside(path) or "",
    ]
    data = content.encode()
    result = await ctx.runtime.exec(ctx.sandbox, argv, actor=ctx.actor, stdin=data)
    if result.exit_code != 0:
        return ToolResult((result.stderr.decode(errors="replace") or "write failed").strip(), error=True)
    return ToolResult(f"wrote {len(data)} bytes to {path}")


class ReadFileTool(Tool):
    name = "read_file"
    description = "Read a text file."
    risk: Risk = "read"
    Args = PathArgs

    def read_path(self, args: PathArgs) -> str:
        return args.path

    async def run(self, args: PathArgs, ctx: ToolContext) -> ToolResult:
        ok, text = await _read(ctx, args.path)
        return ToolResult(text, error=not ok)


class WriteFileTool(Tool):
    name = "write_file"
    description = "Write a text file, replacing it."
    risk: Risk = "write"
    Args = WriteArgs

    def written_path(self, args: WriteArgs) -> str:
        return args.path

    def summary(self, args: WriteArgs) -> str:
        return f"write_file: {args.path} ({len(args.content.encode())} bytes)"

    async def run(self, args: WriteArgs, ctx: ToolContext) -> ToolResult:
        return await _write(ctx, args.path, args.content)


class EditFileTool(Tool):
    name = "edit_file"
    description = "Replace one exact occurrence of text in a file."
    risk: Risk = "write"
    Args = EditArgs

    def written_path(self, args: EditArgs) -> str:
        return args.path

    def summary(self, args: EditArgs) -> str:
        return f"edit_file: {args.path}"

    async def run(self, args: EditArgs, ctx: ToolContext) -> ToolResult:
        ok, text = await _read(ctx, args.path)
        if not ok:
            return ToolResult(text, error=True)
        count = text.count(args.old) if args.old else 0
        if count != 1:
            why = "is empty" if not args.old else "was not found" if count == 0 else f"occurs {count} times"
            return ToolResult(
                f"edit_file: the text to replace {why} in {args.path}; nothing was changed. "
                "fix: read the file and copy the exact text, with enough context to occur once",
                error=True,
            )
        written = await _write(ctx, args.path, text.replace(args.old, args.new, 1))
        return written if written.error else ToolResult(f"edited {args.path}")


class ListFilesTool(Tool):
    name = "list_files"
    description = "List files under a folder."
    risk: Risk = "read"
    Args = ListArgs

    async def run(self, args: ListArgs, ctx: ToolContext) -> ToolResult:
        # find prints one path a line, folders marked with a slash; relative to the folder asked.
        argv = [
            "find",
            inside(args.path) or "",
            "-mindepth",
            "1",
            "-maxdepth",
            "3",
            "-not",
            "-path",
            "*/.*",
            "-printf",
            "%P%y\\n",
        ]
        result = await ctx.runtime.exec(ctx.sandbox, argv, actor=ctx.actor)
        if result.exit_code != 0:
            return ToolResult(result.stderr.decode(errors="replace").strip() or "cannot list", error=True)
        lines = sorted(
            line[:-1] + ("/" if line.endswith("d") else "")
            for line in result.stdout.decode(errors="replace").splitlines()
            if line
        )
        shown = lines[:MAX_LISTED]
        more = f"\n[{len(lines) - MAX_LISTED} more not shown]" if len(lines) > MAX_LISTED else ""
        return ToolResult("\n".join(shown) + more if shown else "(empty)")
