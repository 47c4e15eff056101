"""`hermitcrab skills list|install`: the skills each agent is offered, and installing one
from a folder, an archive or a URL, pinned by its SHA-256 and read for risky content
before a person says yes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermitcrab.agent.skills import SKILL_FILES, Shelf, SkillError, load_skill
from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.paths import Paths

PIN_FILE = ".hermitcrab-skill.json"
MAX_DOWNLOAD = 5 * 1024 * 1024
MAX_FILES = 500
MAX_TOTAL = 20 * 1024 * 1024

# What a person should read before a skill is installed: instructions an agent would follow.
RISKS = (
    ("pipes a download into a shell", re.compile(r"\b(curl|wget)\b[^\n|]*\|\s*(sudo\s+)?(ba|z|da)?sh\b")),
    ("runs decoded data", re.compile(r"base64\s+(-d|--decode)[^\n|]*\|\s*(ba|z)?sh\b|\beval\s*\(\s*atob\b")),
    ("carries a long encoded blob", re.compile(r"[A-Za-z0-9+/]{400,}={0,2}")),
    (
        "reads credentials",
        re.compile(
            r"~?/?\.ssh/|\bid_(rsa|ed25519|ecdsa)\b|\.aws/credentials|\.netrc\b|\.npmrc\b|\.git-credentials|"
            r"/etc/shadow|\bkeychain\b|\bprintenv\b|\benv\s*\|\s*(curl|nc|wget)",
            re.IGNORECASE,
        ),
    ),
    (
        "sends secrets somewhere",
        re.compile(
            r"(api[_-]?key|secret|token|password)[^\n]{0,80}\b(curl|wget|nc|post|upload|send)\b", re.I
        ),
    ),
)


@dataclass
class Finding:
    file: str
    line: int
    what: str
    text: str


def list_skills(json_output: bool) -> None:
    from hermitcrab.config.loader import load_config

    paths = Paths.from_env()
    config = load_config(paths.config)
    report: list[dict[str, Any]] = []
    for name, agent in config.agents.items():
        workspace = Path(agent.workspace).expanduser() if agent.workspace else paths.workspace
        shelf = Shelf.for_agent(workspace, paths.skills)
        for skill in shelf.scan():
            pin = _read_pin(skill.folder) if skill.source == "home" else None
            report.append({
                "agent": name,
                "name": skill.name,
                "source": skill.source,
                "description": skill.description,
                "offered": skill.usable,
                "missing": list(skill.missing),
                "sha256": pin.get("sha256") if pin else None,
                "folder": str(skill.folder),
            })  # fmt: skip
        for problem in shelf.problems:
            report.append({"agent": name, "problem": problem})
    if json_output:
        print_json({"skills": report})
        return
    if not report:
        print(f"No skills. Put one in {paths.workspace / 'skills'} or `hermitcrab skills install PATH`.")
    for entry in report:
        if "problem" in entry:
            print(f"[{entry['agent']}] not loaded: {entry['problem']}")
            continue
        state = "offered" if entry["offered"] else f"hidden: needs {', '.join(entry['missing'])}"
        where = {"workspace": "workspace", "home": "installed", "bundled": "bundled"}[entry["source"]]
        print(f"[{entry['agent']}] {entry['name']} ({where}, {state}): {entry['description']}")
        if entry["source"] == "workspace":
            print("    from the workspace: a turn that sees it is tainted unless the agent wrote it itself")


def install(source: str, sha256: str | None, yes: bool, force: bool) -> None:
    paths = Paths.from_env()
    with tempfile.TemporaryDirectory(prefix="hc-skill-") as tmp:
        staged, digest = _fetch(source, Path(tmp))
        if sha256 is not None and sha256.lower() != digest:
            fail(f"{source}: its SHA-256 is {digest}, not {sha256.lower()}: refused "
                 "(it changed, or it is not what you meant to install)")  # fmt: skip
        try:
            skill = load_skill(staged, "home")
        except SkillError as exc:
            fail(f"{source}: not a skill: {exc}")
        findings = scan(staged)
        if findings:
            print(f"{skill.name}: this skill has content to read before you install it:", file=sys.stderr)
            for f in findings:
                print(f"  {f.file}:{f.line}: {f.what}: {f.text}", file=sys.stderr)
            if not yes and not _confirm("Install it anyway? [y/N] "):
                fail("not installed. fix: read the lines above; if they are fine, run again with --yes")
        target = paths.skills / skill.name
        if target.exists():
            pin = _read_pin(target)
            if pin and pin.get("sha256") == digest:
                print(f"{skill.name} is installed already (sha256 {digest})")
                return
            if not force:
                fail(f"a skill named {skill.name} is installed already ({target}). fix: --force replaces it")
        paths.skills.mkdir(parents=True, exist_ok=True)
        pin_data = {
            "source": source,
            "sha256": digest,
            "installed_at": time.time(),
            "findings": [f.__dict__ for f in findings],
        }
        (staged / PIN_FILE).write_text(json.dumps(pin_data, indent=2))
        replaced = target.with_name(f".{skill.name}.old")
        if target.exists():
            os.replace(target, replaced)
        shutil.copytree(staged, target, symlinks=False)
        shutil.rmtree(replaced, ignore_errors=True)
    state = (
        "offered to the agents"
        if skill.usable
        else f"hidden until this machine has {', '.join(skill.missing)}"
    )
    print(f"installed {skill.name} into {target} (sha256 {digest}); {state}")


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(question).strip().lower() in ("y", "yes")


def _read_pin(folder: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((folder / PIN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _fetch(source: str, tmp: Path) -> tuple[Path, str]:
    """The skill's folder, staged under `tmp`, and the SHA-256 it is pinned by: of the
    bytes downloaded or read (an archive, a SKILL.md), or of the folder's tree."""
    if source.startswith(("http://", "https://")):
        data = _download(source)
        return _unpack(data, source, tmp), hashlib.sha256(data).hexdigest()
    path = Path(source).expanduser()
    if path.is_dir():
        staged = tmp / "skill"
        _copy_plain(path, staged)
        return staged, tree_sha256(staged)
    if path.is_file():
        data = path.read_bytes()
        return _unpack(data, source, tmp), hashlib.sha256(data).hexdigest()
    fail(f"{source}: no such folder, file or URL")
    raise AssertionError  # fail() exits


def _download(url: str) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=30, trust_env=False) as response:
            if response.status_code != 200:
                fail(f"{url}: the server answered {response.status_code}")
            data = bytearray()
            for chunk in response.iter_bytes():
                data.extend(chunk)
                if len(data) > MAX_DOWNLOAD:
                    fail(f"{url}: larger than {MAX_DOWNLOAD // (1024 * 1024)} MB: not a skill")
    except httpx.HTTPError as exc:
        fail(f"{url}: {exc}")
    return bytes(data)


def _unpack(data: bytes, source: str, tmp: Path) -> Path:
    """An archive (zip, tar.gz), or a bare SKILL.md, into a plain folder: no links, no
    path outside it, bounded in files and bytes."""
    staged = tmp / "skill"
    staged.mkdir()
    members: list[tuple[str, bytes]] = []
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        fail(f"{source}: {info.filename} is a link: refused")
                    members.append((info.filename, archive.read(info)))
    elif data[:2] == b"\x1f\x8b" or _is_tar(data):
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                if member.issym() or member.islnk() or member.isdev():
                    fail(f"{source}: {member.name} is a link or device: refused")
                if member.isfile():
                    handle = archive.extractfile(member)
                    members.append((member.name, handle.read() if handle else b""))
    else:
        members.append(("SKILL.md", data))
    if len(members) > MAX_FILES or sum(len(d) for _, d in members) > MAX_TOTAL:
        fail(f"{source}: more than {MAX_FILES} files or {MAX_TOTAL // (1024 * 1024)} MB: not a skill")
    names = [n for n, _ in members]
    prefix = _common_folder(names)
    for name, content in members:
        relative = Path(name[len(prefix) :] if prefix else name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            fail(f"{source}: {name} would land outside the skill's folder: refused")
        target = staged / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if not any((staged / f).is_file() for f in SKILL_FILES):
        fail(f"{source}: no SKILL.md at the top of it: not a skill")
    return staged


def _is_tar(data: bytes) -> bool:
    return len(data) > 262 and data[257:262] == b"ustar"


def _common_folder(names: list[str]) -> str:
    """The one folder every member is in (`my-skill/`), stripped as archives usually wrap."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return f"{tops.pop()}/"
    return ""


def _copy_plain(source: Path, target: Path) -> None:
    count = total = 0
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d))]
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or name == PIN_FILE:
                continue
            count += 1
            total += path.stat().st_size
            if count > MAX_FILES or total > MAX_TOTAL:
                fail(f"{source}: more than {MAX_FILES} files or {MAX_TOTAL // (1024 * 1024)} MB: not a skill")
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


def tree_sha256(folder: Path) -> str:
    """A folder's hash: each file's relative path and content, in order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != PIN_FILE):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def scan(folder: Path) -> list[Finding]:
    findings = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in RISKS:
                if pattern.search(line):
                    shown = line.strip()
                    shown = shown if len(shown) <= 120 else shown[:117] + "..."
                    findings.append(Finding(path.relative_to(folder).as_posix(), number, what, shown))
    return findings
