"""What the daemon imports before it answers: the sandbox runtime, the egress proxy and the
model runtime load after readiness (readiness is a target: <= 0.3 s on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys

LATER = [
    "hermitcrab.runtime.sandboxes",
    "hermitcrab.egress.proxy",
    "hermitcrab.agent.loop",
    "hermitcrab.tools.registry",
    "hermitcrab.policy.schema",
    "h11",
    "llama_cpp",
    "openai",
    "anthropic",
]


def test_the_gateway_imports_no_heavy_part_before_it_is_ready() -> None:
    probe = (
        "import json, sys; import hermitcrab.gateway.server, hermitcrab.gateway.app; "
        f"print(json.dumps([m for m in {LATER!r} if m in sys.modules]))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(loaded.stdout) == []
