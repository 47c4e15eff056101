"""Workspace files: read, write, edit (exact search and replace), list. Every one runs
inside the sandbox, so the binds and Landlock decide what is reachable, never the host."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult
from hermitcrab.tools.shell import inside

if TYPE_CHECKING:
    from hermitcrab.runtime import ExecResult, SandboxRuntime

MAX_FILE_BYTES = 1024 * 1024
MAX_LISTED = 500
# What a person deciding on a held write sees of it: enough for any persona file.
PREVIEW_CHARS = 8000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain_path(path: str) -> str:
    # A newline in a name would split what the sandbox reports about the file (its real
    # path) into two; no file the agent needs has one.
    if _CONTROL.search(path):
        raise ValueError("a path must not contain control characters (newlines, tabs...)")
    return path


def preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}… [{len(text)} characters in all]"


class PathArgs(Args):
    path: str = Field(description="relative to the workspace")

    _plain = field_validator("path")(_plain_path)


class WriteArgs(PathArgs):
    content: str


class EditArgs(PathArgs):
    old: str = Field(description="exact text to replace; must occur once")
    new: str


class ListArgs(Args):
    path: str = Field(".", description="folder, relative to the workspace")

    _plain = field_validator("path")(_plain_path)


# The file's real path on the first line, then its bytes: a read through a link reads
# another file than the one named, and its taint is that other file's.
READ_SCRIPT = 'realpath -m -- "$1" && exec head -c "$2" -- "$1"'


async def _read(ctx: ToolContext, path: str) -> tuple[bool, str, str]:
    """(ok, text or error, the real path inside the sandbox)."""
    named = inside(path) or ""
    argv = ["/bin/sh", "-c", READ_SCRIPT, "read_file", named, str(MAX_FILE_BYTES + 1)]
    result = await ctx.runtime.exec(ctx.sandbox, argv, actor=ctx.actor)
    real, _, data = result.stdout.partition(b"\n")
    if result.exit_code != 0:
        return False, result.stderr.decode(errors="replace").strip() or f"cannot read {path}", named
    if len(data) > MAX_FILE_BYTES:
        return (
            False,
            f"{path} is larger than {MAX_FILE_BYTES} bytes; read a part with exec (head, sed -n)",
            named,
        )
    return True, data.decode(errors="replace"), real.decode(errors="replace")


# Never through a link. A symbolic one: the guard and the taint marks judge a file by its
# name, so the name written must be the file written (`docs -> ..` would make docs/AGENTS.md
# the persona); `realpath -m` of a normalised path is itself unless a link is on the way.
# A hard one (an unpacked archive can link notes.txt to AGENTS.md): the new text goes to a
# new file renamed into place, which replaces the name and leaves the other file alone.
WRITE_SCRIPT = """
case "$(realpath -m -- "$1")" in
  "$1") ;;
  *) echo "refusing to write through a symbolic link: $1" >&2; exit 3 ;;
esac
dir=$(dirname -- "$1") && mkdir -p -- "$dir" || exit 1
tmp=$(mktemp -- "$dir/.hermitcrab-write.XXXXXX") || exit 1
if [ -e "$1" ]; then chmod --reference="$1" -- "$tmp"; else chmod 644 -- "$tmp"; fi
cat > "$tmp" && mv -f -- "$tmp" "$1" || { rm -f -- "$tmp"; exit 1; }
"""


async def write_in_sandbox(
    runtime: SandboxRuntime, sandbox: str, actor: str, path: str, data: bytes
) -> ExecResult:
    """Write `data` to `path` (made absolute and normal) from inside the sandbox."""
    argv = ["/bin/sh", "-c", WRITE_SCRIPT, "write_file", inside(path) or ""]
    return await runtime.exec(sandbox, argv, actor=actor, stdin=data)


async def _write(ctx: ToolContext, path: str, content: str) -> ToolResult:
    data = content.encode()
    result = await write_in_sandbox(ctx.runtime, ctx.sandbox, ctx.actor, path, data)
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
        ok, text, real = await _read(ctx, args.path)
        return ToolResult(text, error=not ok, data={"real_path": real})


class WriteFileTool(Tool):
    name = "write_file"
    description = "Write a text file, replacing it."
    risk: Risk = "write"
    Args = WriteArgs

    def written_path(self, args: WriteArgs) -> str:
        return args.path

    def summary(self, args: WriteArgs) -> str:
        return f"write_file: {args.path} ({len(args.content.encode())} bytes)"

    def details(self, args: WriteArgs) -> str:
        return preview(args.content)

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

    def details(self, args: EditArgs) -> str:
        return f"replace:\n{preview(args.old)}\nwith:\n{preview(args.new)}"

    async def run(self, args: EditArgs, ctx: ToolContext) -> ToolResult:
        ok, text, _ = await _read(ctx, args.path)
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
    reads_workspace = True  # file names are content too

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
