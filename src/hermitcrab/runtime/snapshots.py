"""Snapshot archives of a sandbox: its workspace, its policy and its metadata, with a
manifest of SHA-256 checksums that `read` verifies before anything is restored."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import stat
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
            _add_workspace(tar, workspace, files)
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


def _add_workspace(tar: tarfile.TarFile, workspace: Path, files: dict[str, str]) -> None:
    """Every entry of the workspace, read through directory descriptors and never through a
    link: the sandbox writes the workspace, and a folder it swaps for a link to a host folder
    mid-snapshot must not make root read the host's files into the archive. Links are kept
    as links, a second name of a file as a hard link; devices, fifos and sockets are left."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    root = os.open(workspace, flags | os.O_DIRECTORY)
    stack: list[tuple[int, str, list[str]]] = [(root, "", sorted(os.listdir(root), reverse=True))]
    first_names: dict[tuple[int, int], str] = {}  # (device, inode) -> the member that holds it
    try:
        while stack:
            folder, rel, names = stack[-1]
            if not names:
                os.close(folder)
                stack.pop()
                continue
            name = names.pop()
            arcname = f"{WORKSPACE}/{rel}{name}"
            try:
                info = os.stat(name, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since it was listed
            member = tarfile.TarInfo(arcname)
            member.mode, member.mtime = stat.S_IMODE(info.st_mode), int(info.st_mtime)
            if stat.S_ISLNK(info.st_mode):
                member.type, member.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=folder)
                tar.addfile(member)
            elif stat.S_ISDIR(info.st_mode):
                child = os.open(name, flags | os.O_DIRECTORY, dir_fd=folder)  # ELOOP if swapped for a link
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
                stack.append((child, f"{rel}{name}/", sorted(os.listdir(child), reverse=True)))
            elif stat.S_ISREG(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if info.st_nlink > 1 and key in first_names:
                    member.type, member.linkname = tarfile.LNKTYPE, first_names[key]
                    tar.addfile(member)
                    continue
                handle = os.open(name, flags | os.O_NONBLOCK, dir_fd=folder)
                with os.fdopen(handle, "rb") as opened:
                    if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
                        continue  # swapped for something else since the stat
                    data = opened.read()
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
                files[arcname] = _sha256(data)
                first_names.setdefault(key, arcname)
    except OSError as exc:
        raise SandboxError(
            f"the workspace changed under the snapshot ({exc}); nothing was written. fix: try again"
        ) from None
    finally:
        for folder, _, _ in stack:
            os.close(folder)


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
