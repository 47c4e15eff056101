"""The one place the gateway's parts are built. The daemon, the benchmarks and the test
fixtures all call these, so that what is measured and tested is what runs."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermitcrab.agent import Agent, Persona, Services
from hermitcrab.agent.skills import Shelf
from hermitcrab.config.paths import Paths
from hermitcrab.config.schema import AgentConfig, Config
from hermitcrab.errors import PolicyError
from hermitcrab.inference import Provider
from hermitcrab.store import Store

if TYPE_CHECKING:
    from hermitcrab.approvals import Approvals
    from hermitcrab.egress.forward import InferenceRoute
    from hermitcrab.egress.secrets import SecretStore
    from hermitcrab.runtime import SandboxRuntime
    from hermitcrab.sandbox.base import Layers
    from hermitcrab.tools import Tool


def build_runtime(
    store: Store,
    *,
    policy_file: Path,
    workspaces: Path,
    state_root: Path,
    approvals: Approvals | None = None,
    secrets: SecretStore | None = None,
    inference: InferenceRoute | None = None,
    upstream_tls: ssl.SSLContext | None = None,
    egress: bool = True,
    layers: Layers | None = None,
) -> SandboxRuntime:
    """The sandbox runtime over the local driver, with its egress proxy (unless `egress`
    is off, for benchmarks of the bare sandbox)."""
    from hermitcrab.approvals import Approvals
    from hermitcrab.runtime import SandboxRuntime
    from hermitcrab.sandbox.local.driver import LocalDriver

    proxy = None
    if egress:
        from hermitcrab.egress.proxy import EgressProxy

        proxy = EgressProxy(store.audit, approvals or Approvals(), secrets, upstream_tls, inference)
    return SandboxRuntime(
        LocalDriver(state_root), store.sandboxes, store.audit, policy_file, workspaces, layers, egress=proxy
    )


def build_agents(
    config: Config,
    paths: Paths,
    route: Callable[[str, AgentConfig], Provider],
    agent_for: Callable[[str], Agent],
    services: Services,
) -> dict[str, Agent]:
    """Every configured agent: its model route, its persona (workspace files) and the tools
    it offers the model (every built-in, or the ones `agents.NAME.tools` names)."""
    agents = {}
    for name, agent in config.agents.items():
        workspace = Path(agent.workspace).expanduser() if agent.workspace else paths.workspace
        shelf = Shelf.for_agent(workspace, paths.skills)
        persona = Persona(workspace, shelf)
        toolbox = functools.partial(_toolbox, agent.tools, services, agent_for, shelf)
        agents[name] = Agent(name, agent, route(name, agent), persona, toolbox)
    return agents


def _toolbox(
    names: list[str] | None, services: Services, agent_for: Callable[[str], Agent], shelf: Shelf | None = None
) -> dict[str, Tool]:
    from hermitcrab.agent.skill_tool import SkillTool
    from hermitcrab.agent.subagents import SpawnAgentTool
    from hermitcrab.tools import builtin_tools

    tools = {**builtin_tools(), "spawn_agent": SpawnAgentTool(services, agent_for)}
    if shelf is not None:
        tools["skill"] = SkillTool(shelf)
    return tools if names is None else {n: t for n, t in tools.items() if n in names}


def tool_entry(subject: dict[str, Any]) -> str:
    """What `approve --always` adds to tools.allow for a held call: the tool, or for exec
    the very command the person saw (`exec=git status`: that command, no other arguments),
    never exec as a whole."""
    from hermitcrab.policy.rules import allows_command

    tool = str(subject["tool"])
    if tool != "exec":
        return tool
    command = " ".join(str(subject.get("command") or "").split())
    if not command or not allows_command(command):
        raise PolicyError(
            f"'always' allows one plain command, and {command or 'an empty command'!r} is not one (it has "
            "shell operators, quotes or globs). fix: approve it once, or write the rule into policy.yaml"
        )
    return f"exec={command}"
