"""A sandbox runtime over a real store and real sandboxes, in a temporary folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from hermitcrab.gateway.parts import build_runtime
from hermitcrab.runtime import SandboxRuntime
from hermitcrab.store import Store

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

DEFAULT_POLICY = resources.files("hermitcrab.config").joinpath("templates", "policy.yaml").read_text()


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.policy_file = root / "policy.yaml"
        self.policy_file.write_text(DEFAULT_POLICY)
        self.store = Store(root / "state.db")

    def runtime(self) -> SandboxRuntime:
        return build_runtime(
            self.store,
            policy_file=self.policy_file,
            workspaces=self.root / "w",
            state_root=self.root / "s",
            egress=False,
        )


@pytest.fixture
def env(run: Callable[[Any], Any]) -> Iterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="hcr"))
    made = Env(root)
    yield made
    made.store.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def runtime(env: Env, run: Callable[[Any], Any]) -> Iterator[SandboxRuntime]:
    rt = env.runtime()
    yield rt
    run(rt.stop())
