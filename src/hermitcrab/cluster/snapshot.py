"""An agent as one file, to carry it from one machine to another (laptop to workstation):
its rows of the store (store/snapshot.py), its workspace, the policy and its own block of
the config, with a manifest that counts and hashes every part, so an import checks the
file before it changes anything.

The file is a gzip'd tar: manifest.json, agent.db, config.json, policy.yaml, workspace/...
A snapshot is taken and restored with the gateway stopped: the store's copy would be
consistent anyway (SQLite's backup), but the workspace is plain files a turn may be
writing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hermitcrab import __version__
from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError
from hermitcrab.store.snapshot import export_rows, import_rows

FORMAT = 1
MAX_MEMBERS = 200_000  # a snapshot is a file someone hands over: bounded like any archive


class SnapshotError(HermitCrabError):
    pass


@dataclass(frozen=True)
class Taken:
    agent: str
    path: Path
    counts: dict[str, int]
    files: int
    bytes: int
    seconds: float


def workspace_of(paths: Paths, agent_config: Any) -> Path:
    return Path(agent_config.workspace).expanduser() if agent_config.workspace else paths.workspace


def export_agent(paths: Paths, config: Any, agent: str, out: Path) -> Taken:
    started = time.monotonic()
    if agent not in config.agents:
        raise SnapshotError(
            f"no agent named {agent!r} in {paths.config} (agents: {', '.join(config.agents)})"
        )
    if config.store.url is not None:
        raise SnapshotError("this home's store is on PostgreSQL: export reads the embedded store only (yet)")
    agent_config = config.agents[agent]
    workspace = workspace_of(paths, agent_config)
    with tempfile.TemporaryDirectory(prefix="hc-export-") as scratch:
        rows = Path(scratch) / "agent.db"
        counts = export_rows(paths.state_db, agent, rows) if paths.state_db.exists() else {}
        parts: dict[str, bytes | Path] = {
            "agent.db": rows if rows.exists() else b"",
            "config.json": json.dumps(
                {
                    "agent": agent,
                    "block": agent_config.model_dump(mode="json", exclude_unset=True),
                    "model": config.models[agent_config.model].model_dump(mode="json", exclude_unset=True),
                    "model_name": agent_config.model,
                },
                indent=2,
            ).encode(),
            "policy.yaml": paths.policy.read_bytes() if paths.policy.exists() else b"",
        }
        files, size = _workspace_files(workspace)
        manifest = {
            "format": FORMAT,
            "hermitcrab": __version__,
            "agent": agent,
            "taken_at": time.time(),
            "counts": counts,
            "workspace": {"files": len(files), "bytes": size},
            "sha256": {name: _digest(part) for name, part in parts.items()}
            | {f"workspace/{rel}": _digest(full) for rel, full in files},
        }
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
            for name, part in parts.items():
                _add(tar, name, part)
            for rel, full in files:
                tar.add(full, arcname=f"workspace/{rel}", recursive=False)
        os.replace(partial, out)  # whole, or not there
    return Taken(agent, out, counts, len(files), size, time.monotonic() - started)


def _workspace_files(workspace: Path) -> tuple[list[tuple[str, Path]], int]:
    """Regular files only (a link could point anywhere on this machine), sorted."""
    found: list[tuple[str, Path]] = []
    size = 0
    if not workspace.is_dir():
        return found, 0
    for root, dirs, names in os.walk(workspace):
        dirs[:] = sorted(d for d in dirs if not (Path(root) / d).is_symlink())
        for name in sorted(names):
            full = Path(root) / name
            if full.is_file() and not full.is_symlink():
                found.append((full.relative_to(workspace).as_posix(), full))
                size += full.stat().st_size
    return found, size


def _digest(part: bytes | Path) -> str:
    digest = hashlib.sha256()
    if isinstance(part, bytes):
        digest.update(part)
    else:
        with part.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _add(tar: tarfile.TarFile, name: str, part: bytes | Path) -> None:
    if isinstance(part, Path):
        tar.add(part, arcname=name, recursive=False)
        return
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(part), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(part))


@dataclass(frozen=True)
class Restored:
    agent: str
    counts: dict[str, int]
    files: int
    config_added: bool
    seconds: float


def read_manifest(file: Path) -> dict[str, Any]:
    try:
        with tarfile.open(file, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            manifest = json.loads(member.read(1 << 20))
    except (OSError, EOFError, zlib.error, tarfile.TarError, KeyError, ValueError) as exc:
        raise SnapshotError(f"{file} is not an agent snapshot ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(
            f"{file}: snapshot format {manifest.get('format')!r} is not {FORMAT}. fix: upgrade hermitcrab"
        )
    return manifest


def import_agent(paths: Paths, file: Path) -> Restored:
    """Check the whole file against its manifest and this home against it, then restore:
    the rows (one transaction), the workspace files, and the agent's block of the config
    where this one has none (its model's too, when missing). A check that fails changes
    nothing."""
    started = time.monotonic()
    manifest = read_manifest(file)
    agent = str(manifest.get("agent"))
    expected: dict[str, str] = manifest.get("sha256") or {}
    with tempfile.TemporaryDirectory(prefix="hc-import-") as scratch:
        root = Path(scratch)
        _unpack(file, root, expected)
        settings = json.loads((root / "config.json").read_text())
        new_config, config = _config_with(paths, agent, settings)
        if config.store.url is not None:
            raise SnapshotError(
                "this home's store is on PostgreSQL: import writes the embedded store only (yet)"
            )
        workspace = workspace_of(paths, config.agents[agent])
        arriving = root / "workspace"
        incoming = sorted(p for p in arriving.rglob("*") if p.is_file()) if arriving.is_dir() else []
        clash = [
            rel
            for rel in (p.relative_to(arriving).as_posix() for p in incoming)
            if (workspace / rel).exists() and not _replaceable(workspace / rel, arriving / rel)
        ]
        if clash:
            raise SnapshotError(
                f"{workspace} already has other versions of {', '.join(clash[:5])}. fix: import into a "
                "new home, or move those files aside"
            )
        rows = root / "agent.db"
        counts = import_rows(paths.state_db, rows, agent) if rows.stat().st_size else {}
        for source in incoming:
            target = workspace / source.relative_to(arriving)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        if counts:
            _refresh_marks(paths, agent, workspace)
        if new_config is not None:
            paths.config.write_text(new_config)
    return Restored(agent, counts, len(incoming), new_config is not None, time.monotonic() - started)


def _replaceable(here: Path, arriving: Path) -> bool:
    """The same file, or one `onboard` wrote and nobody changed since."""
    if _digest(here) == _digest(arriving):
        return True
    from importlib import resources

    template = resources.files("hermitcrab.config").joinpath("templates", here.name)
    return template.is_file() and here.read_bytes() == template.read_bytes()


def _unpack(file: Path, root: Path, expected: dict[str, str]) -> None:
    """Every member a plain file under a safe name, listed in the manifest with its hash:
    anything else (a link, a device, `..`, a file not listed or changed) refuses the lot."""
    try:
        _members(file, root, expected)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise SnapshotError(f"{file} is damaged ({type(exc).__name__}: {exc})") from None
    missing = [name for name in expected if not (root / name).is_file()]
    if missing:
        raise SnapshotError(f"{file}: missing {', '.join(missing[:5])} (truncated?)")


def _members(file: Path, root: Path, expected: dict[str, str]) -> None:
    with tarfile.open(file, "r:gz") as tar:
        members = tar.getmembers()
        if len(members) > MAX_MEMBERS:
            raise SnapshotError(f"{file}: {len(members)} members, over {MAX_MEMBERS}")
        for member in members:
            name = PurePosixPath(member.name)
            if member.name == "manifest.json":
                continue
            if not member.isfile() or name.is_absolute() or ".." in name.parts:
                raise SnapshotError(f"{file}: {member.name!r} is not a plain file inside the snapshot")
            if member.name not in expected:
                raise SnapshotError(f"{file}: {member.name!r} is not in its manifest")
            tar.extract(member, root, filter="data")
            if _digest(root / member.name) != expected[member.name]:
                raise SnapshotError(f"{file}: {member.name} does not match its manifest (damaged or changed)")


def _config_with(paths: Paths, agent: str, settings: dict[str, Any]) -> tuple[str | None, Any]:
    """The config text with the agent's block added (its model's too, when missing), comments
    kept, checked as a whole; None when the config already defines the agent. Nothing is
    written here."""
    from hermitcrab.config.loader import load_config

    config = load_config(paths.config)
    if agent in config.agents:
        return None, config
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(paths.config.read_text())
    model = settings["block"].get("model", settings.get("model_name"))
    if model not in (data.get("models") or {}):
        data.setdefault("models", {})[model] = settings["model"]
    block = dict(settings["block"])
    if block.get("workspace"):  # the other machine's folder: this home gets one of its own
        block["workspace"] = str(paths.home / f"workspace-{agent}")
    data.setdefault("agents", {})[agent] = block
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    with tempfile.TemporaryDirectory(prefix="hc-config-") as scratch:
        trial = Path(scratch) / "hermitcrab.yaml"
        trial.write_text(buffer.getvalue())
        try:
            config = load_config(trial)
        except HermitCrabError as exc:
            raise SnapshotError(f"agent {agent!r} does not fit {paths.config}: {exc}") from None
    return buffer.getvalue(), config


def _refresh_marks(paths: Paths, agent: str, workspace: Path) -> None:
    """The marks follow the copied files (a mark holds for a file as it was written: its
    mtime), and every one says tainted: a snapshot is a file anyone could have edited, so
    what it claims the agent wrote cleanly is not taken on its word."""
    import sqlite3

    conn = sqlite3.connect(paths.state_db)
    try:
        with conn:
            for (path,) in conn.execute("SELECT path FROM file_marks WHERE agent = ?", (agent,)).fetchall():
                target = workspace / path
                if target.is_file():
                    conn.execute(
                        "UPDATE file_marks SET mtime_ns = ?, tainted = 1, source = coalesce(source, ?) "
                        "WHERE agent = ? AND path = ?",
                        (target.stat().st_mtime_ns, "an imported snapshot", agent, path),
                    )
    finally:
        conn.close()
