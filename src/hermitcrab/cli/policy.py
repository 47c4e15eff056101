"""`hermitcrab policy check|show`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hermitcrab.cli.output import fail
from hermitcrab.config.paths import Paths
from hermitcrab.errors import PolicyError

if TYPE_CHECKING:
    from hermitcrab.policy import Policy


def check(file: str) -> None:
    from hermitcrab.policy import load_policy

    path = Path(file)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        fail(str(exc))
    print(f"{path}: valid policy (version {policy.version}); landlock {policy.filesystem.landlock}")
    for warning in _machine_warnings(policy):
        print(f"WARNING: {warning}")


def _machine_warnings(policy: Policy) -> list[str]:
    """What this machine cannot enforce of the policy, and identities that are not safe."""
    from hermitcrab.sandbox.local import cgroups, identity

    warnings = []
    uid = identity.warning(policy)
    if uid:
        warnings.append(uid)
    support = cgroups.detect()
    if support.memory is None:
        what = "sandboxes will not start" if policy.process.memory == "required" else "held best effort"
        warnings.append(
            f"this machine gives no memory cgroup ({'; '.join(support.why_not)}): max_memory_mb for "
            f"all commands together is not enforced (process.memory: {policy.process.memory}, {what})"
        )
    from hermitcrab.sandbox.local import quota

    why_not = quota.cap_unavailable()
    if why_not:
        what = "sandboxes will not start" if policy.filesystem.workspace_quota == "required" else "measured"
        warnings.append(
            f"the workspace cannot be a size-capped filesystem here ({why_not}): workspace_max_mb is "
            f"held best effort (filesystem.workspace_quota: {policy.filesystem.workspace_quota}, {what})"
        )
    return warnings


def show(file: str | None) -> None:
    import sys

    from ruamel.yaml import YAML

    from hermitcrab.policy import load_policy, policy_version
    from hermitcrab.sandbox.local.supervisor import landlock_abi

    path = Path(file) if file else Paths.from_env().policy
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        fail(f"{exc}\nUntil this is fixed, nothing runs (fail closed).")
    print(f"# effective policy from {path} (version {policy_version(path.read_text())})")
    abi = landlock_abi()
    if abi == 0:
        print(f"# WARNING: this kernel has no Landlock; landlock: {policy.filesystem.landlock}")
    else:
        print(f"# Landlock ABI {abi} on this kernel")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(policy.model_dump(mode="json"), sys.stdout)


def set_policy(file: str) -> None:
    """Check FILE, then replace the policy file atomically, then ask the gateway to apply it."""
    from hermitcrab.cli.client import GatewayClient
    from hermitcrab.policy import load_policy

    source = Path(file)
    try:
        load_policy(source)
    except PolicyError as exc:
        fail(f"{exc}\nThe policy in force is unchanged.")
    paths = Paths.from_env()
    tmp = paths.policy.with_name(f".{paths.policy.name}.tmp")
    tmp.write_text(source.read_text())
    tmp.replace(paths.policy)
    client = GatewayClient(paths)
    if client.health() is None:
        print(f"{paths.policy} updated; it applies when the gateway starts.")
        return
    outcome = client.request("POST", "/api/policy/reload")
    applied = ", ".join(outcome["sandboxes"]) or "no running sandbox"
    print(f"{paths.policy} updated (version {outcome['version']}); in force for: {applied}")
    if outcome.get("needs_recreate"):
        print(
            "filesystem and process limits changed too; they apply when a sandbox is created. "
            f"Recreate: {', '.join(outcome['needs_recreate'])}"
        )
