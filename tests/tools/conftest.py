"""The runtime fixtures (a real store, real sandboxes) and a context for calling tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hermitcrab.runtime import SandboxRuntime
from hermitcrab.tools.base import ToolContext
from tests.runtime.conftest import Env, env, runtime  # noqa: F401  (fixtures used here too)


@pytest.fixture
def context(env: Env, runtime: SandboxRuntime, run: Callable[[Any], Any]) -> Callable[..., ToolContext]:  # noqa: F811
    """A tool context on a fresh sandbox named 'agent' (created once per test)."""

    def make(**changes: Any) -> ToolContext:
        if "agent" not in runtime.boxes:
            run(runtime.create("agent"))
        values: dict[str, Any] = {
            "agent": "main",
            "session_id": "s",
            "sandbox": "agent",
            "runtime": runtime,
            "store": env.store,
            "workspace": runtime.get("agent").box.spec.workspace,
            "actor": "agent:main",
        }
        values.update(changes)
        return ToolContext(**values)

    return make
