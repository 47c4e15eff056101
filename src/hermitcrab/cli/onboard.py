"""`hermitcrab onboard`: lay out $HERMITCRAB_HOME. Never overwrites: running it twice is harmless."""

from __future__ import annotations

import os
import secrets
import stat
from importlib import resources
from pathlib import Path

from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import WORKSPACE_FILES, Paths
from hermitcrab.policy import load_policy


def _template(name: str) -> str:
    return resources.files("hermitcrab.config").joinpath("templates", name).read_text()


def _write_new(path: Path, text: str, mode: int = 0o644) -> bool:
    """Create `path` with `text` unless it exists; True if created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def _configure_model_interactively() -> str:
    import typer

    text = _template("hermitcrab.yaml")
    choice = typer.prompt(
        "Model: 'embedded' (SmolLM2-135M, runs here, no key) or an OpenAI-compatible base URL",
        default="embedded",
    )
    if choice.strip() in ("", "embedded"):
        return text
    model = typer.prompt("Model name at that server")
    key_env = typer.prompt("Environment variable holding its API key (empty for none)", default="")
    remote = f"  remote:\n    provider: openai\n    base_url: {choice.strip()}\n    model: {model}\n" + (
        f"    api_key_env: {key_env}\n" if key_env else ""
    )
    text = text.replace("\nagents:", f"{remote}\nagents:", 1)
    return text.replace("    model: embedded\n", "    model: remote\n", 1)


def run(yes: bool) -> None:
    paths = Paths.from_env()
    if not yes:
        import typer

        print(f"HermitCrab will keep its files in {paths.home}")
        if not typer.confirm("Continue?", default=True):
            raise SystemExit(1)
    paths.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.logs.mkdir(exist_ok=True)
    paths.workspace.mkdir(exist_ok=True)

    report: list[tuple[str, Path]] = []

    def note(created: bool, path: Path) -> None:
        report.append(("created" if created else "kept", path))

    config_text = (
        _template("hermitcrab.yaml") if yes or paths.config.exists() else _configure_model_interactively()
    )
    note(_write_new(paths.config, config_text), paths.config)
    # The token is the only key to the gateway: owner-only from the first byte.
    note(_write_new(paths.token, secrets.token_urlsafe(32) + "\n", 0o600), paths.token)
    if stat.S_IMODE(paths.token.stat().st_mode) != 0o600:
        paths.token.chmod(0o600)
        report.append(("fixed mode 0600", paths.token))
    note(_write_new(paths.policy, _policy_for_this_machine()), paths.policy)
    for name in WORKSPACE_FILES:
        target = paths.workspace / name
        note(_write_new(target, _template(name)), target)

    for what, path in report:
        print(f"  {what:>8}  {path}")
    if ("created", paths.policy) in report:
        print(f"  policy: {_enforcement_note()}")
    # Check what is there now, including files we kept: a broken one must be said at once.
    load_config(paths.config)
    load_policy(paths.policy)
    print(f"HermitCrab is set up in {paths.home}. Next: `hermitcrab up`")


def _policy_for_this_machine() -> str:
    """The policy template, with what this machine can enforce made a requirement."""
    from hermitcrab.sandbox.local import cgroups, quota

    text = _template("policy.yaml")
    if cgroups.detect().memory is not None:
        text = text.replace("  memory: best_effort ", "  memory: required    ", 1)
        # The cgroup caps memory used; the address space may then be roomy enough for Node.
        text = text.replace("  # address_space_mb: 32768 ", "  address_space_mb: 32768   ", 1)
    if quota.cap_unavailable() is None:
        text = text.replace("  workspace_quota: best_effort ", "  workspace_quota: required    ", 1)
    return text


def _enforcement_note() -> str:
    from hermitcrab.sandbox.local import cgroups, quota

    support = cgroups.detect()
    if support.memory is not None:
        memory = "this machine has a memory cgroup: process.memory is required"
    else:
        memory = (
            "this machine gives no memory cgroup (" + "; ".join(support.why_not) + "): process.memory "
            "is best_effort, and `doctor` says so"
        )
    why_not = quota.cap_unavailable()
    disk = (
        "workspaces are size-capped filesystems (workspace_quota: required)"
        if why_not is None
        else f"workspace sizes are measured, not capped ({why_not})"
    )
    return f"{memory}; {disk}"
