"""The sandbox runtime: named sandboxes with records, an audit entry for every exec, and
recreation after a restart. The gateway owns one; the CLI reaches it through the API.
It speaks to sandboxes only through the `SandboxDriver` seam (sandbox/base.py).

Every command a tool runs goes through `exec` here, so every one of them is sandboxed
and audited; there is no other path to a shell.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermitcrab.errors import PolicyError, SandboxError, SandboxNotFound
from hermitcrab.policy import Policy, parse_policy, policy_version
from hermitcrab.runtime import snapshots
from hermitcrab.sandbox.base import (
    EGRESS_PORT,
    IN_SANDBOX,
    ExecResult,
    Layers,
    OutputChunk,
    Sandbox,
    SandboxDriver,
    SandboxSpec,
    Stream,
    check_name,
)
from hermitcrab.store import AuditEntry, AuditLog, SandboxRecord, SandboxRecords

if TYPE_CHECKING:
    from hermitcrab.egress.proxy import EgressProxy

log = logging.getLogger("hermitcrab.runtime")


@dataclass
class Managed:
    box: Sandbox
    policy: Policy
    policy_text: str
    version: str
    follows_file: bool  # created from the policy file: its network rules follow it live
    agent: str | None = None  # whom it works for: inference.local takes this agent's model route


def _best_effort(status: dict[str, Any]) -> list[str]:
    """The layers this sandbox runs without their strong mechanism, by policy field."""
    weak = []
    if status.get("landlock") != "enforced":
        weak.append("filesystem.landlock")
    if status.get("memory_cap") == "best_effort":
        weak.append("process.memory")
    if status.get("process_tracking") == "best_effort":
        weak.append("process tracking (sessions, not cgroups)")
    if status.get("workspace_quota") == "best_effort":
        weak.append("filesystem.workspace_quota")
    return weak


class _AuditedStream:
    """A stream that says in the audit log how it ended."""

    def __init__(self, inner: Stream, ended: Callable[[str], None]) -> None:
        self._inner, self._ended = inner, ended
        self._said = False

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close_stdin(self) -> None:
        await self._inner.close_stdin()

    async def read(self) -> OutputChunk | ExecResult:
        piece = await self._inner.read()
        if isinstance(piece, ExecResult) and not self._said:
            self._said = True
            self._ended(f"exit {piece.exit_code}" + (f", {piece.killed_by}" if piece.killed_by else ""))
        return piece

    async def close(self) -> None:
        await self._inner.close()
        if not self._said:
            self._said = True
            self._ended("closed by the gateway")


class SandboxRuntime:
    def __init__(
        self,
        driver: SandboxDriver,
        records: SandboxRecords,
        audit: AuditLog,
        policy_file: Path,
        workspaces: Path,
        layers: Layers | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.driver = driver
        self.records = records
        self.audit = audit
        self.policy_file = policy_file
        self.workspaces = workspaces
        self.layers = layers or Layers()
        self.boxes: dict[str, Managed] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.egress = egress
        self.policy_error: str | None = None  # the last reload's error; the last good policy stays

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def default_policy_text(self) -> str:
        """The policy file's text; missing means nothing may run (fail closed)."""
        try:
            return self.policy_file.read_text()
        except FileNotFoundError:
            raise PolicyError(
                f"{self.policy_file}: no policy, so nothing may run. fix: run `hermitcrab onboard` "
                "to write the default policy, or pass --policy FILE"
            ) from None

    async def create(
        self,
        name: str,
        policy_text: str | None = None,
        workspace: Path | None = None,
        actor: str = "api",
        agent: str | None = None,
    ) -> dict[str, Any]:
        check_name(name)
        async with self._lock(name):
            if name in self.boxes:
                raise SandboxError(
                    f"sandbox '{name}' already exists. fix: destroy it first, or pick another name"
                )
            text = policy_text if policy_text is not None else self.default_policy_text()
            source = str(self.policy_file) if policy_text is None else f"policy for sandbox '{name}'"
            try:
                policy = parse_policy(text, source)
            except PolicyError as exc:
                self._audit(actor, "sandbox.create", "denied", name, detail=str(exc))
                raise
            folder = workspace or self.workspaces / name
            folder.mkdir(parents=True, exist_ok=True)
            managed = await self._start(name, policy, text, folder, policy_text is None, agent)
            await asyncio.to_thread(
                self.records.put, name, text, managed.version, str(folder), policy_text is None, agent
            )
            self._audit(actor, "sandbox.create", "ok", name, policy_version=managed.version)
            return self.info(name)

    async def ensure(self, name: str, *, workspace: Path, agent: str | None) -> None:
        """The sandbox `name`, created from the policy file if it is not running yet (an
        agent's sandbox: made on its first tool call, then kept warm)."""
        if name in self.boxes:
            return
        try:
            await self.create(name, workspace=workspace, actor="gateway", agent=agent)
        except SandboxError:
            if name not in self.boxes:
                raise

    async def _start(
        self, name: str, policy: Policy, text: str, workspace: Path, follows_file: bool, agent: str | None
    ) -> Managed:
        door = ca = None
        if self.egress is not None:
            door = self.driver.socket_path(self.driver.state_root / name, "egress.sock")
            ca = await asyncio.to_thread(self.egress.ca, name, self.driver.state_root / name / "ca")
            await self.egress.listen(name, door, lambda: self.boxes[name].policy.network, EGRESS_PORT)
        spec = SandboxSpec(
            name, policy, workspace, self.layers, egress_socket=door,
            ca_cert=ca.cert_path if ca else None, ca_bundle=ca.bundle_path if ca else None,
        )  # fmt: skip
        try:
            box = await self.driver.create(spec)
        except BaseException:
            if self.egress is not None:
                await self.egress.close(name)
            raise
        managed = Managed(box, policy, text, policy_version(text), follows_file, agent)
        self.boxes[name] = managed
        if box.status.get("landlock") != "enforced":
            log.warning(
                "sandbox without Landlock", extra={"sandbox": name, "landlock": box.status.get("landlock")}
            )
        return managed

    async def restore_all(self) -> list[str]:
        """Recreate every recorded sandbox (after a restart), workspace intact."""
        restored = []
        for record in await asyncio.to_thread(self.records.all):
            async with self._lock(record.name):
                if record.name not in self.boxes:
                    restored += await self._restore(record)
        return restored

    async def _restore(self, record: SandboxRecord) -> list[str]:
        try:
            text = record.policy
            if record.follows_file:
                try:  # the file may have changed while we were down
                    text = self.default_policy_text()
                    parse_policy(text, str(self.policy_file))
                except PolicyError:
                    text = record.policy
            policy = parse_policy(text, f"policy for sandbox '{record.name}'")
            await self._start(
                record.name, policy, text, Path(record.workspace), record.follows_file, record.agent
            )
        except (PolicyError, SandboxError) as exc:
            log.error("could not recreate sandbox", extra={"sandbox": record.name, "error": str(exc)})
            self._audit("gateway", "sandbox.recreate", "failed", record.name, detail=str(exc))
            return []
        self._audit("gateway", "sandbox.recreate", "ok", record.name, policy_version=record.policy_hash)
        return [record.name]

    def get(self, name: str) -> Managed:
        managed = self.boxes.get(name)
        if managed is None:
            raise SandboxNotFound(f"no sandbox named '{name}'. fix: `hermitcrab sandbox create {name}`")
        return managed

    async def exec(
        self,
        name: str,
        argv: list[str],
        *,
        actor: str = "api",
        cwd: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_output: Callable[[OutputChunk], None] | None = None,
    ) -> ExecResult:
        named = IN_SANDBOX.set(name)
        try:
            return await self._exec(name, argv, actor, cwd, timeout, stdin, on_output)
        finally:
            IN_SANDBOX.reset(named)

    async def _exec(
        self,
        name: str,
        argv: list[str],
        actor: str,
        cwd: str | None,
        timeout: float | None,
        stdin: bytes | None,
        on_output: Callable[[OutputChunk], None] | None,
    ) -> ExecResult:
        managed = self.get(name)
        if not managed.box.alive:
            # Its supervisor died (or was killed): bring it back, workspace intact.
            async with self._lock(name):
                if not self.boxes[name].box.alive:
                    await self.driver.destroy(managed.box)
                    if self.egress is not None:
                        await self.egress.close(name)
                    managed = await self._start(
                        name,
                        managed.policy,
                        managed.policy_text,
                        managed.box.spec.workspace,
                        managed.follows_file,
                        managed.agent,
                    )
        started = time.perf_counter()
        try:
            result = await self.driver.exec(
                managed.box, argv, cwd=cwd, timeout=timeout, stdin=stdin, on_output=on_output
            )
        except SandboxError as exc:
            self._audit(actor, "exec", "failed", name, argv=argv, cwd=cwd, policy_version=managed.version,
                        duration_ms=(time.perf_counter() - started) * 1000, detail=str(exc))  # fmt: skip
            raise
        outcome = "killed" if result.killed_by else "ok" if result.exit_code == 0 else "failed"
        self._audit(
            actor,
            "exec",
            outcome,
            name,
            argv=argv,
            cwd=cwd,
            policy_version=managed.version,
            exit_code=result.exit_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            bytes_out=result.bytes_out,
            killed_by=result.killed_by,
        )
        return result

    async def stream(
        self,
        name: str,
        argv: list[str],
        *,
        actor: str = "api",
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Stream:
        """A long-lived command in the sandbox with stdin and stdout open both ways (an MCP
        server over stdio); audited when it starts and when it ends."""
        managed = self.get(name)
        try:
            stream = await self.driver.stream(managed.box, argv, cwd=cwd, env=env)
        except SandboxError as exc:
            self._audit(actor, "exec.stream", "failed", name, argv=argv, cwd=cwd,
                        policy_version=managed.version, detail=str(exc))  # fmt: skip
            raise
        self._audit(actor, "exec.stream", "started", name, argv=argv, cwd=cwd, policy_version=managed.version)

        def ended(detail: str) -> None:
            self._audit(actor, "exec.stream", "ended", name, argv=argv, detail=detail)

        return _AuditedStream(stream, ended)

    def deny(
        self, name: str | None, argv: list[str] | None, actor: str, rule: str, reason: str
    ) -> ExecResult:
        """Record a refused exec; the result says why and what to do."""
        self._audit(actor, "exec", "denied", name, argv=argv, rule=rule, detail=reason)
        return ExecResult(exit_code=None, denied=reason)

    async def destroy(self, name: str, actor: str = "api", forget: bool = True) -> None:
        async with self._lock(name):
            managed = self.boxes.pop(name, None)
            if managed is None and (not forget or await asyncio.to_thread(self.records.get, name) is None):
                raise SandboxNotFound(f"no sandbox named '{name}'")
            if managed is not None:
                await self.driver.destroy(managed.box, forget=forget)
                if self.egress is not None:
                    await self.egress.close(name)
            if forget:
                await asyncio.to_thread(self.records.delete, name)
                shutil.rmtree(self.driver.state_root / name, ignore_errors=True)
            self._audit(actor, "sandbox.destroy" if forget else "sandbox.stop", "ok", name)

    async def stop(self) -> None:
        """Stop every sandbox but keep the records: they are recreated on the next start."""
        for name in list(self.boxes):
            await self.destroy(name, actor="gateway", forget=False)

    def reload_policy(self, actor: str = "gateway") -> dict[str, Any]:
        """Apply the policy file's network (and tools) rules to every sandbox that follows it,
        now. Filesystem and process limits are fixed at creation; a broken file changes nothing."""
        try:
            text = self.default_policy_text()
            new = parse_policy(text, str(self.policy_file))
        except PolicyError as exc:
            if self.policy_error != str(exc):
                log.error("policy reload failed; the last good policy stays", extra={"error": str(exc)})
                self._audit(actor, "policy.reload", "failed", None, detail=str(exc))
            self.policy_error = str(exc)
            return {"applied": False, "error": str(exc), "sandboxes": []}
        self.policy_error = None
        version = policy_version(text)
        changed, needs_recreate = [], []
        for name, managed in self.boxes.items():
            if not managed.follows_file or managed.version == version:
                continue
            if managed.policy.model_dump(include={"filesystem", "process"}) != new.model_dump(
                include={"filesystem", "process"}
            ):
                needs_recreate.append(name)
            managed.policy = managed.policy.model_copy(update={"network": new.network, "tools": new.tools})
            managed.version = version
            managed.policy_text = text
            changed.append(name)
        if changed:
            self._audit(
                actor, "policy.reload", "ok", None, policy_version=version, detail=f"applied to {changed}"
            )
        in_force = sorted(name for name, m in self.boxes.items() if m.follows_file and m.version == version)
        return {"applied": True, "version": version, "sandboxes": in_force, "needs_recreate": needs_recreate}

    async def watch_policy_file(self, poll_seconds: float) -> None:
        """Apply the policy file whenever it changes (inotify: no wake-up while it does
        not; polled every `poll_seconds` where inotify is missing). The first pass reports
        a file broken at start-up."""
        from hermitcrab.runtime.watch import watch

        await watch(self.policy_file, self.reload_policy, poll_seconds)

    def add_network_rule(self, sandbox: str, rule: dict[str, Any], actor: str) -> None:
        """Write a rule into the sandbox's policy (the file, keeping its comments, or the
        sandbox's own record), audit the diff, and apply it."""
        from hermitcrab.policy.edit import add_network_rule

        self._change_policy(sandbox, add_network_rule, rule, actor)

    def _change_policy(self, sandbox: str, edit: Callable[[str, Any], str], change: Any, actor: str) -> None:
        managed = self.get(sandbox)
        old = self.default_policy_text() if managed.follows_file else managed.policy_text
        new = edit(old, change)
        policy = parse_policy(new, f"policy for sandbox '{sandbox}'")  # never write one that does not load
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "before", "after"))
        version = policy_version(new)
        if managed.follows_file:
            tmp = self.policy_file.with_name(f".{self.policy_file.name}.tmp")
            tmp.write_text(new)
            tmp.replace(self.policy_file)
            self._audit(actor, "policy.change", "ok", sandbox, policy_version=version, detail=diff)
            self.reload_policy(actor)
        else:
            managed.policy = managed.policy.model_copy(
                update={"network": policy.network, "tools": policy.tools}
            )
            managed.policy_text = new
            managed.version = version
            self.records.put_soon(
                sandbox, new, version, str(managed.box.spec.workspace), False, managed.agent
            )
            self._audit(actor, "policy.change", "ok", sandbox, policy_version=version, detail=diff)

    def allow_tool(self, sandbox: str, entry: str, actor: str) -> None:
        """Add `entry` to tools.allow of the sandbox's policy (the file, or its own record),
        audit the diff, and apply it."""
        from hermitcrab.policy.edit import add_tool_allow

        self._change_policy(sandbox, add_tool_allow, entry, actor)

    def info(self, name: str) -> dict[str, Any]:
        managed = self.get(name)
        box = managed.box
        policy = managed.policy
        return {
            "name": name,
            "running": box.alive,
            "host_pid": box.host_pid,
            "created_at": box.created_at,
            "workspace": str(box.spec.workspace),
            "policy_version": managed.version,
            "landlock": box.status.get("landlock"),
            "landlock_abi": box.status.get("landlock_abi"),
            "run_as_uid": policy.process.run_as_uid,
            "host_uid": box.status.get("host_uid"),
            "process_tracking": box.status.get("process_tracking"),
            "memory_cap": box.status.get("memory_cap"),
            "best_effort": _best_effort(box.status),
            "processes": len(self.driver.processes(box)) if box.alive else 0,
            "network": "egress proxy" if box.spec.egress_socket else "none",
            "follows_policy_file": managed.follows_file,
            "agent": managed.agent,
        }

    def list(self) -> list[dict[str, Any]]:
        return [self.info(name) for name in sorted(self.boxes)]

    async def snapshot(self, name: str, archive: Path, actor: str = "api") -> dict[str, Any]:
        managed = self.get(name)
        self.driver.freeze(managed.box, True)  # a crash-consistent moment: nothing inside moves
        try:
            manifest = await asyncio.to_thread(
                snapshots.write,
                archive,
                name,
                managed.box.spec.workspace,
                managed.policy_text,
                managed.version,
            )
        finally:
            self.driver.freeze(managed.box, False)
        self._audit(
            actor, "sandbox.snapshot", "ok", name, policy_version=managed.version, detail=str(archive)
        )
        return manifest

    async def restore(
        self,
        archive: Path,
        name: str,
        actor: str = "api",
        agent: str | None = None,
        archive_policy: bool = False,
    ) -> dict[str, Any]:
        """A new sandbox with the archive's workspace, under the current policy file. The
        archive's own policy (whoever made the archive chose it: the uid, host binds, where
        credentials go) applies only when `archive_policy` says so; its difference from the
        current one is returned for a person to read either way."""
        check_name(name)
        if name in self.boxes or await asyncio.to_thread(self.records.get, name) is not None:
            raise SandboxError(
                f"sandbox '{name}' already exists. fix: pick another name, or destroy it first"
            )
        folder = self.workspaces / name
        if folder.exists() and any(folder.iterdir()):
            raise SandboxError(f"{folder} is not empty. fix: move it aside or pick another name")
        packed = await asyncio.to_thread(snapshots.read, archive, folder)
        current = self.default_policy_text()
        info = await self.create(name, packed if archive_policy else None, folder, actor=actor, agent=agent)
        source = "the archive's policy" if archive_policy else "the current policy file"
        self._audit(actor, "sandbox.restore", "ok", name, detail=f"{archive}, under {source}")
        diff = "".join(
            difflib.unified_diff(current.splitlines(True), packed.splitlines(True), "current", "archive")
        )
        return {
            **info,
            "policy_from": "archive" if archive_policy else "current",
            "archive_policy_diff": diff,
        }

    def _audit(self, actor: str, action: str, outcome: str, sandbox: str | None, **fields: Any) -> None:
        # Batched on the audit log's own thread: a commit waits for the disk, and the event
        # loop must not (readers flush first, so an entry is never missing from what they see).
        self.audit.record_soon(
            AuditEntry(actor=actor, action=action, outcome=outcome, sandbox=sandbox, **fields)
        )
