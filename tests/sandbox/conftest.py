"""Real sandboxes for the driver tests, made and used in one event loop on the main thread
(a sandbox dies with the thread that created it)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hermitcrab.policy import Policy
from hermitcrab.sandbox.base import Layers, SandboxSpec
from hermitcrab.sandbox.local.driver import LocalDriver, LocalSandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

FAST_LIMITS = {"max_processes": 32, "max_memory_mb": 512, "max_file_size_mb": 8, "cpu_seconds": 5,
               "timeout_seconds": 10, "max_output_bytes": 4096}  # fmt: skip


@pytest.fixture
def make_sandbox(
    run: Callable[[Any], Any],
) -> Iterator[Callable[..., tuple[LocalDriver, LocalSandbox, Path]]]:
    """make_sandbox(name, process={...}, layers=Layers(...)) -> (driver, sandbox, workspace)."""
    root = Path(tempfile.mkdtemp(prefix="hct"))  # short: the control socket path has a limit
    made: list[tuple[LocalDriver, LocalSandbox]] = []

    def make(name: str = "t", process: dict[str, Any] | None = None, layers: Layers | None = None,
             **policy: Any) -> tuple[LocalDriver, LocalSandbox, Path]:  # fmt: skip
        driver = LocalDriver(root / "state")
        workspace = root / f"ws-{name}"
        workspace.mkdir(exist_ok=True)
        spec = SandboxSpec(name, Policy(version=1, process={**FAST_LIMITS, **(process or {})}, **policy),
                           workspace, layers or Layers())  # fmt: skip
        box = run(driver.create(spec))
        made.append((driver, box))
        return driver, box, workspace

    yield make
    for driver, box in made:
        if box.alive:
            run(driver.destroy(box))
    shutil.rmtree(root, ignore_errors=True)
