"""The real `hermitcrab` command against a real daemon in a temporary home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hermitcrab.config.paths import Paths
from tests.conftest import SCRIPTED_CONFIG, free_port


def hc(
    paths: Paths, *args: str, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERMITCRAB_HOME": str(paths.home)}
    return subprocess.run(
        [sys.executable, "-m", "hermitcrab", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def acting_config(tool: str, arguments: dict[str, object], done: str) -> str:
    """A scripted model that makes one tool call, then says `done` (JSON is YAML too)."""
    import json

    replies = json.dumps([{"calls": [{"name": tool, "arguments": arguments}]}, done])
    return SCRIPTED_CONFIG.format(port=free_port(), replies=replies)


@pytest.fixture
def daemon_home(home: Paths) -> Iterator[Paths]:
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies='["Bonjour!", "Second answer."]'))
    yield home
    hc(home, "down")
