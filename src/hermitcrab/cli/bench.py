"""`hermitcrab bench sandbox`: create, destroy and exec latency, measured in one run,
against the same command run as a plain subprocess outside any sandbox."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

COMMAND = ["true"]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _measure(runs: int) -> dict[str, Any]:
    from hermitcrab.gateway.parts import build_runtime
    from hermitcrab.policy import parse_policy
    from hermitcrab.store import Store

    policy_text = resources.files("hermitcrab.config").joinpath("templates", "policy.yaml").read_text()
    parse_policy(policy_text)
    creates = max(runs // 10, 5)
    with tempfile.TemporaryDirectory(prefix="hcb") as tmp:
        root = Path(tmp)
        policy_file = root / "policy.yaml"
        policy_file.write_text(policy_text)
        store = Store(root / "state.db")
        runtime = build_runtime(
            store, policy_file=policy_file, workspaces=root / "w", state_root=root / "s", egress=False
        )
        try:
            # Warm-up: the first create compiles the seccomp filter and warms the page cache.
            await runtime.create("warmup")
            await runtime.destroy("warmup")
            create_ms, destroy_ms = [], []
            for i in range(creates):
                started = time.perf_counter()
                await runtime.create(f"b{i}")
                create_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await runtime.destroy(f"b{i}")
                destroy_ms.append((time.perf_counter() - started) * 1000)

            await runtime.create("exec")
            for _ in range(10):
                await runtime.exec("exec", COMMAND)
            exec_ms, bare_ms = [], []
            # Interleaved, so that both see the same machine state.
            for _ in range(runs):
                started = time.perf_counter()
                result = await runtime.exec("exec", COMMAND)
                exec_ms.append((time.perf_counter() - started) * 1000)
                assert result.exit_code == 0, result
                started = time.perf_counter()
                subprocess.run(COMMAND, check=True)
                bare_ms.append((time.perf_counter() - started) * 1000)
            landlock = runtime.info("exec")["landlock"]
            await runtime.destroy("exec")
        finally:
            await runtime.stop()
            store.close()
    exec_p50 = statistics.median(exec_ms)
    bare_p50 = statistics.median(bare_ms)
    return {
        "create_p50_ms": round(statistics.median(create_ms), 2),
        "destroy_p50_ms": round(statistics.median(destroy_ms), 2),
        "exec_p50_ms": round(exec_p50, 3),
        "exec_p99_ms": round(_percentile(exec_ms, 0.99), 3),
        "bare_p50_ms": round(bare_p50, 3),
        "exec_ratio": round(exec_p50 / bare_p50, 2),
        "command": COMMAND,
        "execs": runs,
        "creates": creates,
        "landlock": landlock,
    }


def sandbox(json_output: bool, runs: int) -> None:
    results = asyncio.run(_measure(max(runs, 10)))
    if json_output:
        print(json.dumps(results, indent=2))
        return
    r = results
    print(f"sandbox create   p50 {r['create_p50_ms']:8.2f} ms   (target <= 50; OpenShell 740)")
    print(f"sandbox destroy  p50 {r['destroy_p50_ms']:8.2f} ms   (target <= 20; OpenShell 5200)")
    print(f"exec `true`      p50 {r['exec_p50_ms']:8.3f} ms   p99 {r['exec_p99_ms']:.3f} ms (OpenShell 56)")
    print(f"bare subprocess  p50 {r['bare_p50_ms']:8.3f} ms")
    print(f"exec ratio           {r['exec_ratio']:8.2f} x    (target <= 3)")
