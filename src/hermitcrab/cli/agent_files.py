"""`hermitcrab agent export|import`: an agent carried between two homes as one file."""

from __future__ import annotations

from pathlib import Path

from hermitcrab.cli.daemon import running_pid
from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError


def _stopped(paths: Paths, what: str) -> None:
    pid = running_pid(paths)
    if pid is not None:
        fail(f"the gateway is running (pid {pid}): {what} needs it stopped. fix: `hermitcrab down` first")


def export(agent: str | None, name: str, force: bool, json_output: bool) -> None:
    from hermitcrab.cluster.snapshot import export_agent

    file = Path(name).expanduser()
    paths = Paths.from_env()
    _stopped(paths, "a whole snapshot of the workspace")
    if file.exists() and not force:
        fail(f"{file} exists. fix: another name, or --force to replace it")
    try:
        config = load_config(paths.config)
        taken = export_agent(paths, config, agent or config.default_agent, file)
    except (HermitCrabError, OSError) as exc:
        fail(str(exc))
    if json_output:
        print_json({"agent": taken.agent, "file": str(taken.path), "counts": taken.counts,
                    "workspace_files": taken.files, "workspace_bytes": taken.bytes,
                    "seconds": round(taken.seconds, 3)})  # fmt: skip
        return
    c = taken.counts
    print(
        f"exported agent {taken.agent} to {taken.path} in {taken.seconds:.2f} s: "
        f"{c.get('sessions', 0)} sessions, {c.get('events', 0)} events, {c.get('jobs', 0)} jobs, "
        f"{c.get('memory_files', 0)} memory files, "
        f"{taken.files} workspace files ({taken.bytes / 1024:.0f} KiB)"
    )


def restore(name: str, json_output: bool) -> None:
    from hermitcrab.cluster.snapshot import import_agent

    file = Path(name).expanduser()
    paths = Paths.from_env()
    _stopped(paths, "an import")
    if not file.is_file():
        fail(f"{file} is not a file")
    try:
        done = import_agent(paths, file)
    except (HermitCrabError, OSError) as exc:
        fail(str(exc))
    if json_output:
        print_json({"agent": done.agent, "counts": done.counts, "workspace_files": done.files,
                    "config_added": done.config_added, "seconds": round(done.seconds, 3)})  # fmt: skip
        return
    c = done.counts
    added = f"; its block was added to {paths.config}" if done.config_added else ""
    print(
        f"imported agent {done.agent} in {done.seconds:.2f} s: {c.get('sessions', 0)} sessions, "
        f"{c.get('events', 0)} events, {c.get('jobs', 0)} jobs, {done.files} workspace files{added}. "
        "Next: `hermitcrab up`"
    )
