"""The `skill` tool: a skill's instructions, or a file beside them, when the model asks."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from hermitcrab.agent.skills import (
    MAX_FILE_BYTES,
    SKILL_FILES,
    Shelf,
    Skill,
    SkillError,
    read_skill_file,
    split_front_matter,
)
from hermitcrab.config.plain_files import read_plain
from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult


class SkillArgs(Args):
    name: str = Field(description="the skill's name, from the Skills list")
    file: str | None = Field(None, description="a file in the skill's folder, e.g. references/api.md")


class SkillTool(Tool):
    name = "skill"
    description = "Load a skill's instructions, or a file from its folder."
    risk: Risk = "read"
    Args = SkillArgs

    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf

    def summary(self, args: SkillArgs) -> str:
        return f"skill {args.name}" + (f" {args.file}" if args.file else "")

    async def run(self, args: SkillArgs, ctx: ToolContext) -> ToolResult:
        skill = self.shelf.get(args.name)
        if skill is None:
            known = ", ".join(s.name for s in self.shelf.offered()) or "none"
            return ToolResult(f"skill: no skill named {args.name!r}; there are: {known}", error=True)
        if args.file is None:
            path, text = read_skill_file(skill.folder)
            content = split_front_matter(text, path).body
            files = _listing(skill.folder)
            if files:
                content += "\n\nFiles in this skill's folder (read one with skill(name, file)):\n" + files
        else:
            try:
                content = _read_inside(skill.folder, args.file)
            except SkillError as exc:
                return ToolResult(f"skill: {exc}", error=True)
        shown = f"{skill.folder.name}/{args.file or 'SKILL.md'}"
        return ToolResult(content, taint=await self.taint(skill, ctx, args.file, shown))

    async def taint(self, skill: Skill, ctx: ToolContext, file: str | None, shown: str) -> str | None:
        """A skill from the workspace is what a sandbox may have written."""
        if skill.source != "workspace":
            return None
        from hermitcrab.agent.provenance import file_taint

        relative = (skill.folder / (file or skill.file_name)).relative_to(ctx.workspace).as_posix()
        mark = await ctx.store.aio.file_marks.get(ctx.agent, relative)
        return file_taint(mark, ctx.workspace, relative, f"skills/{shown}")


def _listing(folder: Path, limit: int = 50) -> str:
    names = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            relative = (Path(root) / name).relative_to(folder).as_posix()
            if relative not in SKILL_FILES and not name.startswith("."):
                names.append(relative)
            if len(names) >= limit:
                return "\n".join([*names, "…"])
    return "\n".join(names)


def _read_inside(folder: Path, relative: str) -> str:
    """A file inside the skill's folder: no `..`, no absolute path, no link on the way."""
    try:
        data = read_plain(folder, relative, MAX_FILE_BYTES)
    except OSError as exc:
        raise SkillError(f"{relative}: {exc.strerror or exc}") from None
    text = data[:MAX_FILE_BYTES].decode(errors="replace")
    return text + ("\n[cut: the file is longer]" if len(data) > MAX_FILE_BYTES else "")
