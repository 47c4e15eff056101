"""Snapshots: a consistent archive with checksums; a damaged or hostile archive is refused."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from hermitcrab.errors import SandboxError


def test_snapshot_and_restore_round_trip(runtime, run, env) -> None:
    run(runtime.create("src"))
    run(runtime.exec("src", ["sh", "-c", "mkdir -p d && echo one > d/a && echo two > b && ln -s b link"]))
    archive = env.root / "snap.tar.gz"
    manifest = run(runtime.snapshot("src", archive))
    assert set(manifest["files"]) == {"policy.yaml", "metadata.json", "workspace/d/a", "workspace/b"}
    info = run(runtime.restore(archive, "copy"))
    assert info["policy_version"] == runtime.info("src")["policy_version"]
    result = run(runtime.exec("copy", ["sh", "-c", "cat d/a b link"]))
    assert result.stdout == b"one\ntwo\ntwo\n"
    assert [e.action for e in runtime.audit.entries(sandbox="copy")] == [
        "sandbox.create",
        "sandbox.restore",
        "exec",
    ]


def test_snapshot_while_a_command_runs_resumes_it(runtime, run, env) -> None:
    import asyncio

    run(runtime.create("busy"))

    async def scenario() -> bytes:
        task = asyncio.ensure_future(
            runtime.exec("busy", ["sh", "-c", "for i in 1 2 3; do echo $i >> log; sleep 0.05; done; cat log"])
        )
        await asyncio.sleep(0.05)
        await runtime.snapshot("busy", env.root / "busy.tar.gz")
        return (await task).stdout

    assert run(scenario()) == b"1\n2\n3\n"  # frozen for the snapshot, then continued


def _rewrite(archive: Path, out: Path, change) -> None:
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            member, data = change(member, data)
            if member is not None:
                dst.addfile(member, io.BytesIO(data) if data is not None else None)


def test_tampered_archive_is_refused(runtime, run, env) -> None:
    run(runtime.create("src"))
    run(runtime.exec("src", ["sh", "-c", "echo honest > f"]))
    archive = env.root / "snap.tar.gz"
    run(runtime.snapshot("src", archive))

    def tamper(member, data):
        if member.name == "workspace/f":
            data = b"evil!!\n"
            member.size = len(data)
        return member, data

    bad = env.root / "bad.tar.gz"
    _rewrite(archive, bad, tamper)
    with pytest.raises(SandboxError, match="checksum mismatch for workspace/f"):
        run(runtime.restore(bad, "copy"))
    assert runtime.list() == [runtime.info("src")]


def test_extra_file_is_refused(runtime, run, env) -> None:
    run(runtime.create("src"))
    archive = env.root / "snap.tar.gz"
    run(runtime.snapshot("src", archive))

    def smuggle(member, data):
        if member.name == "policy.yaml":
            extra = tarfile.TarInfo("workspace/smuggled")
            extra.size = 3
            return extra, b"bad"  # replaces policy.yaml: one file extra, one missing
        return member, data

    bad = env.root / "bad.tar.gz"
    _rewrite(archive, bad, smuggle)
    with pytest.raises(SandboxError, match="workspace/smuggled is not in the manifest"):
        run(runtime.restore(bad, "copy"))


def test_path_escaping_the_workspace_is_refused(runtime, run, env) -> None:
    import hashlib

    run(runtime.create("src"))
    archive = env.root / "snap.tar.gz"
    run(runtime.snapshot("src", archive))
    payload = b"owned"
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    # A consistent manifest, checksums and all: only the path is hostile.
    manifest["files"]["workspace/../../escape"] = hashlib.sha256(payload).hexdigest()

    def hostile_path(member, data):
        if member.name == "manifest.json":
            data = json.dumps(manifest).encode()
            member.size = len(data)
        return member, data

    hostile = env.root / "hostile.tar.gz"
    _rewrite(archive, hostile, hostile_path)
    with tarfile.open(hostile) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    escape = tarfile.TarInfo("workspace/../../escape")
    escape.size = len(payload)
    with tarfile.open(hostile, "w:gz") as out:
        for member, data in [*members, (escape, payload)]:
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(SandboxError, match="refused to unpack"):
        run(runtime.restore(hostile, "copy"))
    assert not (env.root / "escape").exists() and not (env.root / "w" / "escape").exists()


def test_not_an_archive(runtime, run, env) -> None:
    junk = env.root / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(SandboxError, match="not a readable snapshot"):
        run(runtime.restore(junk, "copy"))


def test_links_the_sandbox_made_come_back_as_links(runtime, run, env) -> None:
    """An absolute link (as the sandbox sees paths) and a hard link once made restore fail
    halfway, leaving part of the workspace behind."""
    run(runtime.create("links"))
    script = "echo one > a && ln a hard && ln -s /workspace/a abs && mkdir d && ln -s ../a d/rel"
    run(runtime.exec("links", ["sh", "-c", script]))
    archive = env.root / "links.tar.gz"
    run(runtime.snapshot("links", archive))
    run(runtime.restore(archive, "back"))
    result = run(runtime.exec("back", ["sh", "-c", "cat a hard abs d/rel; readlink abs"]))
    assert result.stdout == b"one\none\none\none\n/workspace/a\n"


def test_a_restore_that_is_refused_leaves_nothing_behind(runtime, run, env) -> None:
    import hashlib

    run(runtime.create("half"))
    run(runtime.exec("half", ["sh", "-c", "echo one > a"]))
    archive = env.root / "half.tar.gz"
    run(runtime.snapshot("half", archive))
    # An archive whose second file would be written through a link out of the workspace.
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]
    out = env.root / "outside"
    out.mkdir()
    link = tarfile.TarInfo("workspace/l")
    link.type, link.linkname = tarfile.SYMTYPE, str(out)
    payload = b"written through the link"
    through = tarfile.TarInfo("workspace/l/x")
    through.size = len(payload)
    manifest = json.loads(next(d for m, d in members if m.name == "manifest.json"))
    manifest["files"]["workspace/l/x"] = hashlib.sha256(payload).hexdigest()
    body = json.dumps(manifest).encode()
    hostile = env.root / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as tar:
        for member, data in members:
            if member.name == "manifest.json":
                member.size, data = len(body), body
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
        tar.addfile(link)
        tar.addfile(through, io.BytesIO(payload))
    with pytest.raises(SandboxError, match="restored nothing"):
        run(runtime.restore(hostile, "copy"))
    assert not (out / "x").exists()
    assert not (env.root / "w" / "copy").exists() or not any((env.root / "w" / "copy").iterdir())


def test_a_folder_swapped_for_a_link_mid_snapshot_reads_nothing_of_the_host(tmp_path, monkeypatch) -> None:
    """A process left in the sandbox waits for the snapshot, then swaps a folder for a link
    to a host folder: root once archived what the link led to (the gateway token, secrets)."""
    from hermitcrab.runtime import snapshots

    workspace, host = tmp_path / "w", tmp_path / "host"
    (workspace / "d").mkdir(parents=True)
    (workspace / "b").write_text("mine")
    (workspace / "d" / "a").write_text("mine too")
    host.mkdir()
    (host / "a").write_text("the host's secret")
    real = tarfile.TarFile.addfile

    def addfile(self, member, fileobj=None):  # type: ignore[no-untyped-def]
        if member.name == "workspace/b":  # just after the workspace was first looked at
            (workspace / "d").rename(workspace / "d.old")
            (workspace / "d").symlink_to(host)
        return real(self, member, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", addfile)
    archive = tmp_path / "snap.tar.gz"
    snapshots.write(archive, "x", workspace, "version: 1\n", "v")
    with tarfile.open(archive) as tar:
        contents = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
        link = tar.getmember("workspace/d")
    assert b"the host's secret" not in contents
    assert link.issym() and link.linkname == str(host)
