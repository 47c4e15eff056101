"""Skills: folders with a SKILL.md (YAML front matter, then Markdown instructions), in the
format OpenClaw and other agents use, loaded unchanged.

Sources, first found wins by name: the workspace's `skills/`, then `$HERMITCRAB_HOME/skills/`
(what `hermitcrab skills install` puts there, hash pinned), then the ones that ship with
HermitCrab. Only a skill's name and one-line description enter the system prompt; its
body, and the files beside it, load when the model asks through the `skill` tool, so fifty
skills cost little. A skill whose requirements (`metadata.openclaw.requires`: bins, anyBins,
env; `os`) this machine does not meet is not offered, and `hermitcrab skills list` says why.

A skill in the workspace is what a sandbox may have written: unless it is the agent's own
work from an untainted turn, unchanged since, showing it (its description in the prompt,
its body through the tool) taints the turn, as reading any such file does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hermitcrab.config.plain_files import read_plain

Source = Literal["workspace", "home", "bundled"]
SKILL_FILES = ("SKILL.md", "skill.md")
MAX_SKILL_BYTES = 256 * 1024
MAX_FILE_BYTES = 256 * 1024
MAX_DESCRIPTION = 200  # one line in the prompt, however long the skill's own
MAX_SKILLS = 500  # per source folder: a folder of ten thousand is not read
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BUNDLED = Path(__file__).parent / "bundled_skills"
OS_NAMES = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
METADATA_KEYS = ("openclaw", "clawdbot", "clawdis", "hermitcrab")


class SkillError(Exception):
    pass


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    folder: Path
    source: Source
    missing: tuple[str, ...] = ()  # requirements this machine does not meet
    file_name: str = "SKILL.md"  # or skill.md

    @property
    def usable(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class SkillText:
    front: dict[str, Any]
    body: str


def read_skill_file(folder: Path) -> tuple[Path, str]:
    """SKILL.md (or skill.md), a plain file, never through a link, at most MAX_SKILL_BYTES."""
    for name in SKILL_FILES:
        path = folder / name
        try:
            data = read_plain(folder, name, MAX_SKILL_BYTES)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SkillError(f"{path}: {exc.strerror or exc}") from None
        if len(data) > MAX_SKILL_BYTES:
            raise SkillError(f"{path}: larger than {MAX_SKILL_BYTES // 1024} KB")
        return path, data.decode(errors="replace")
    raise SkillError(f"{folder}: no SKILL.md")


def split_front_matter(text: str, where: Path) -> SkillText:
    from hermitcrab.config.loader import parse_yaml_text
    from hermitcrab.errors import ConfigError

    if not text.startswith("---"):
        return SkillText({}, text)
    end = re.search(r"^---[ \t]*$", text[3:], re.MULTILINE)
    if end is None:
        raise SkillError(f"{where}: the front matter opened with --- is never closed")
    raw, body = text[3 : 3 + end.start()], text[3 + end.end() :]
    try:
        front = parse_yaml_text(raw, where) or {}
    except ConfigError as exc:
        raise SkillError(str(exc)) from None
    if not isinstance(front, dict):
        raise SkillError(f"{where}: the front matter is not a mapping of fields")
    return SkillText(_plain(front), body.lstrip("\n"))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def requirements(front: dict[str, Any]) -> dict[str, Any]:
    """`metadata.openclaw` (or its aliases; a JSON string is allowed, as OpenClaw writes it)."""
    metadata = front.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = None
    if not isinstance(metadata, dict):
        return {}
    for key in METADATA_KEYS:
        if isinstance(metadata.get(key), dict):
            return metadata[key]
    return {}


def unmet(front: dict[str, Any], environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """What this machine lacks of what the skill says it needs."""
    environ = dict(os.environ) if environ is None else environ
    meta = requirements(front)
    needs = meta.get("requires") if isinstance(meta.get("requires"), dict) else {}
    missing = []
    for binary in _strings(needs.get("bins")):
        if shutil.which(binary) is None:
            missing.append(f"the program {binary}")
    any_bins = _strings(needs.get("anyBins"))
    if any_bins and not any(shutil.which(b) for b in any_bins):
        missing.append(f"one of the programs {', '.join(any_bins)}")
    for name in _strings(needs.get("env")):
        if not environ.get(name):
            missing.append(f"the environment variable {name}")
    for key in _strings(needs.get("config")):
        missing.append(f"the OpenClaw setting {key}")
    systems = _strings(meta.get("os"))
    if systems and OS_NAMES.get(sys.platform, sys.platform) not in systems:
        missing.append(f"an OS among {', '.join(systems)}")
    return tuple(missing)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def load_skill(folder: Path, source: Source) -> Skill:
    path, text = read_skill_file(folder)
    parsed = split_front_matter(text, path)
    name = str(parsed.front.get("name") or folder.name)
    if not NAME.match(name):
        raise SkillError(f"{path}: the name {name!r} is not a short plain name (letters, digits, - _ .)")
    description = " ".join(str(parsed.front.get("description") or "").split())
    if not description:
        raise SkillError(f"{path}: no description: the model would not know when to use it")
    return Skill(name, description[:MAX_DESCRIPTION], folder, source, unmet(parsed.front), path.name)


@dataclass
class Shelf:
    """One agent's skills, from its sources in order; re-read only when a folder changes."""

    sources: list[tuple[Source, Path]]
    skills: list[Skill] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _stamp: tuple[Any, ...] | None = None

    @classmethod
    def for_agent(cls, workspace: Path, home_skills: Path) -> Shelf:
        return cls([("workspace", workspace / "skills"), ("home", home_skills), ("bundled", BUNDLED)])

    def scan(self) -> list[Skill]:
        # What ships in the package does not change while the gateway runs: looked at once.
        stamp = tuple(
            _folder_stamp(folder) if source != "bundled" or self._stamp is None else self._stamp[i]
            for i, (source, folder) in enumerate(self.sources)
        )
        if stamp == self._stamp:
            return self.skills
        found: dict[str, Skill] = {}
        problems = []
        for source, folder in self.sources:
            for child in _children(folder):
                try:
                    skill = load_skill(child, source)
                except SkillError as exc:
                    problems.append(str(exc))
                    continue
                found.setdefault(skill.name, skill)  # the first source wins
        self.skills = sorted(found.values(), key=lambda s: s.name)
        self.problems = problems
        self._stamp = stamp
        return self.skills

    def offered(self) -> list[Skill]:
        return [s for s in self.scan() if s.usable]

    def get(self, name: str) -> Skill | None:
        return next((s for s in self.offered() if s.name == name), None)

    def prompt_section(self) -> str:
        offered = self.offered()
        if not offered:
            return ""
        lines = [f"- {s.name}: {s.description}" for s in offered]
        return (
            "## Skills\nInstructions for particular tasks. When one fits, load it with the `skill` "
            "tool before acting.\n" + "\n".join(lines)
        )


def _children(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)[:MAX_SKILLS]
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]


def _folder_stamp(folder: Path) -> tuple[Any, ...]:
    """The folder and each skill file's identity: an edit anywhere shows as a change."""
    marks: list[Any] = []
    for child in _children(folder):
        for name in SKILL_FILES:
            try:
                info = os.lstat(child / name)
            except OSError:
                continue
            marks.append((child.name, name, info.st_mtime_ns, info.st_size, info.st_ino))
    try:
        top = os.stat(folder).st_mtime_ns
    except OSError:
        top = -1
    return (top, *marks)
