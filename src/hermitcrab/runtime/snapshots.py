"""Snapshot archives of a sandbox: its workspace, its policy and its metadata, with a
manifest of SHA-256 checksums that `read` verifies before anything is restored."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from hermitcrab.errors import SandboxError

FORMAT = "hermitcrab-snapshot"
VERSION = 1
MANIFEST = "manifest.json"
POLICY = "policy.yaml"
METADATA = "metadata.json"
WORKSPACE = "workspace"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(archive: Path, name: str, workspace: Path, policy_text: str, version: str) -> dict[str, Any]:
    """Write the archive atomically (temp file, then rename): a crash never leaves half of one."""
    files: dict[str, str] = {}
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=archive.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:

            def add_bytes(arcname: str, data: bytes) -> None:
                info = tarfile.TarInfo(arcname)
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
                files[arcname] = _sha256(data)

            add_bytes(POLICY, policy_text.encode())
            metadata = {"sandbox": name, "policy_version": version, "created_at": time.time()}
            add_bytes(METADATA, json.dumps(metadata, indent=2).encode())
            for path in sorted(workspace.rglob("*")):
                rel = f"{WORKSPACE}/{path.relative_to(workspace).as_posix()}"
                if path.is_symlink() or path.is_dir():
                    tar.add(path, arcname=rel, recursive=False)
                elif path.is_file():
                    info = tar.gettarinfo(path, arcname=rel)
                    if info.islnk():  # another name of a file already in: kept as a hard link
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        tar.addfile(info)
                        continue
                    data = path.read_bytes()
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    tar.addfile(info, io.BytesIO(data))
                    files[rel] = _sha256(data)
            manifest = {"format": FORMAT, "version": VERSION, **metadata, "files": files}
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def read(archive: Path, workspace: Path) -> str:
    """Verify every checksum, then unpack the workspace into `workspace`; return the policy text."""
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as exc:
        raise SandboxError(f"{archive}: not a readable snapshot archive ({exc})") from None
    with tar:
        try:
            manifest = json.loads(_member_bytes(tar, MANIFEST))
        except (KeyError, ValueError):
            raise SandboxError(f"{archive}: no valid {MANIFEST}; this is not a HermitCrab snapshot") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise SandboxError(
                f"{archive}: unknown snapshot format {manifest.get('format')!r} v{manifest.get('version')}"
            )
        expected: dict[str, str] = manifest["files"]
        seen: set[str] = set()
        for member in tar.getmembers():
            if member.name == MANIFEST or not member.isfile():
                continue
            if member.name not in expected:
                raise SandboxError(
                    f"{archive}: {member.name} is not in the manifest; the archive was altered"
                )
            if _sha256(_member_bytes(tar, member.name)) != expected[member.name]:
                raise SandboxError(f"{archive}: checksum mismatch for {member.name}; the archive is corrupt")
            seen.add(member.name)
        missing = set(expected) - seen
        if missing:
            raise SandboxError(f"{archive}: missing {', '.join(sorted(missing))}; the archive is incomplete")
        prefix = f"{WORKSPACE}/"
        members = []
        for member in tar.getmembers():
            if member.name.startswith(prefix):
                member.name = member.name[len(prefix) :]
                if member.islnk() and member.linkname.startswith(prefix):
                    member.linkname = member.linkname[len(prefix) :]  # hard links name members
                members.append(member)
        # All or nothing: unpacked beside the workspace, then renamed into place.
        workspace.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=workspace.parent))
        try:
            tar.extractall(staging, members=members, filter=_keep_links)
            if workspace.exists():
                workspace.rmdir()  # empty (the runtime checked): the staged one takes its place
            staging.rename(workspace)
        except tarfile.FilterError as exc:
            raise SandboxError(f"{archive}: refused to unpack, and restored nothing: {exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return _member_bytes(tar, POLICY).decode()


def _keep_links(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's 'data' filter (no absolute paths, no '..', no devices, nothing written
    through a link out of the folder), except that a symbolic link is kept as the sandbox
    made it: its target is read inside the sandbox, where /workspace is the workspace."""
    if member.issym():
        probe = copy.copy(member)  # the link's own name must stay in the folder
        probe.type, probe.linkname = tarfile.REGTYPE, ""
        tarfile.data_filter(probe, dest)
        return member.replace(uid=None, gid=None, uname=None, gname=None, deep=False)
    return tarfile.data_filter(member, dest)


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise KeyError(name)
    return handle.read()
