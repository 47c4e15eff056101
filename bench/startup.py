"""Start-up, memory and turn-latency benchmark, measured in one run on this machine.

    python bench/startup.py [--json] [--runs N]

Prints: `hermitcrab --help` against `python -c pass`; gateway ready time (the daemon
alone, and `hermitcrab up` from the command to its return); idle RSS
without the model, with it loaded, and after a burst of requests; cold and warm turn
latency on the embedded model; the prompt size of "Say hello in one short sentence.".
Every gateway here runs in a temporary HERMITCRAB_HOME on a free loopback port.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HELLO = "Say hello in one short sentence."
# About 450 tokens of context for the cold/warm comparison.
NOTES = "My notes:\n" + "".join(
    f"Note {i}: the {thing} changes with the {cause}, as observed on day {i * 7}.\n"
    for i, (thing, cause) in enumerate(
        [("shell", "season"), ("sea", "tides"), ("sky", "moon"), ("sand", "wind"), ("reef", "current")] * 4, 1
    )
)
CONFIG = """\
version: 1
gateway:
  port: {port}
models:
  embedded:
    provider: llama_cpp
    preload: {preload}
agents:
  main:
    model: embedded
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_ms(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Daemon:
    """A gateway in the foreground of a child process, in a temporary home."""

    def __init__(self, preload: bool) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="hc-bench-")
        self.home = Path(self.tmp.name)
        self.env = {**os.environ, "HERMITCRAB_HOME": str(self.home)}
        subprocess.run(
            [sys.executable, "-m", "hermitcrab", "onboard", "--yes"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.port = free_port()
        (self.home / "hermitcrab.yaml").write_text(
            CONFIG.format(port=self.port, preload=str(preload).lower())
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = (self.home / "gateway.token").read_text().strip()
        self.http = httpx.Client(
            base_url=self.url, timeout=120, trust_env=False, headers={"Authorization": f"Bearer {self.token}"}
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Spawn the daemon; return milliseconds until /healthz answers."""
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hermitcrab.gateway", "--quiet"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                if self.http.get("/healthz", timeout=1).status_code == 200:
                    return (time.perf_counter() - started) * 1000
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited during start-up")
            time.sleep(0.002)

    def up_from_command(self) -> float:
        """`hermitcrab up`, as a person types it: milliseconds until the command returns
        (it returns once the gateway answers), then `down`."""
        script = Path(sys.executable).with_name("hermitcrab")
        started = time.perf_counter()
        subprocess.run([str(script), "up"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        took = (time.perf_counter() - started) * 1000
        subprocess.run([str(script), "down"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        return took

    def status(self) -> dict[str, Any]:
        return self.http.get("/api/status").json()

    def turn(self, session: str, text: str) -> dict[str, Any]:
        """Send a message, wait for its reply event; return it with the client-side latency."""
        started = time.perf_counter()
        message_id = self.http.post(f"/api/sessions/{session}/messages", json={"text": text}).json()[
            "message_id"
        ]
        while True:
            events = self.http.get(f"/api/sessions/{session}/events", params={"after": message_id}).json()[
                "events"
            ]
            for event in events:
                if event["reply_to"] == message_id and event["kind"] in ("reply", "turn.failed"):
                    event["client_ms"] = (time.perf_counter() - started) * 1000
                    if event["kind"] != "reply":
                        raise RuntimeError(event["data"]["error"])
                    return event
            time.sleep(0.005)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.http.close()
        self.tmp.cleanup()


def measure(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    python = sys.executable
    # Bytecode for our modules, as scripts/install.sh writes it: a start measured while
    # they compile from source (PYTHONDONTWRITEBYTECODE, or a fresh edit) is not a user's.
    import hermitcrab

    package = Path(hermitcrab.__file__).parent
    subprocess.run([python, "-m", "compileall", "-q", str(package)], check=True, stdout=subprocess.DEVNULL)
    results["python_pass_ms"] = round(median_ms([python, "-c", "pass"], runs), 1)
    results["help_ms"] = round(median_ms([python, "-m", "hermitcrab", "--help"], runs), 1)
    results["help_ratio"] = round(results["help_ms"] / results["python_pass_ms"], 2)

    # Without the model: the gateway alone, idle, then after a burst of API requests.
    bare = Daemon(preload=False)
    try:
        ready = [bare.start()]
        time.sleep(0.5)  # the sandbox runtime starts just after readiness: idle means after that
        results["idle_rss_no_model_mb"] = round(rss_mb(bare.proc.pid), 1)
        for _ in range(200):
            bare.http.get("/api/sessions")
            bare.http.get("/api/status")
        results["rss_after_400_requests_no_model_mb"] = round(rss_mb(bare.proc.pid), 1)
    finally:
        bare.stop()
    for _ in range(max(runs // 2, 2)):
        again = Daemon(preload=False)
        try:
            ready.append(again.start())
        finally:
            again.stop()
    results["gateway_ready_ms"] = round(statistics.median(ready), 1)
    command = Daemon(preload=False)
    try:
        ups = [command.up_from_command() for _ in range(max(runs, 7))]
    finally:
        command.stop()
    results["up_command_ms"] = round(statistics.median(ups), 1)

    # With the embedded model: loaded after ready, then a cold and a warm turn.
    daemon = Daemon(preload=True)
    try:
        daemon.start()
        while not daemon.status()["models"]["embedded"]["loaded"]:
            time.sleep(0.01)
        results["model_load_s"] = round(daemon.status()["models"]["embedded"]["load_seconds"], 2)
        results["idle_rss_model_loaded_mb"] = round(rss_mb(daemon.proc.pid), 1)
        # Cold: the first turn after loading, nothing evaluated yet. Warm: a follow-up in the
        # same session, whose prompt extends the cold one, so llama.cpp reuses the prefix.
        cold = daemon.turn("bench-latency", NOTES + "Which note is about tides? Answer with its number.")
        warm = daemon.turn("bench-latency", "And which one is about the moon? Answer with its number.")
        results["cold_turn_ms"] = round(cold["data"]["duration_ms"], 1)
        results["warm_turn_ms"] = round(warm["data"]["duration_ms"], 1)
        results["warm_speedup"] = round(cold["data"]["duration_ms"] / warm["data"]["duration_ms"], 2)
        results["cold_turn_prompt_tokens"] = cold["data"]["usage"]["prompt_tokens"]
        results["warm_turn_prompt_tokens"] = warm["data"]["usage"]["prompt_tokens"]
        results["cold_completion_tokens"] = cold["data"]["usage"]["completion_tokens"]
        results["warm_completion_tokens"] = warm["data"]["usage"]["completion_tokens"]
        hello = daemon.turn("bench-hello", HELLO)
        results["say_hello_prompt_tokens"] = hello["data"]["usage"]["prompt_tokens"]
        results["rss_after_turns_mb"] = round(rss_mb(daemon.proc.pid), 1)
    finally:
        daemon.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=10, help="repetitions for the timed commands")
    args = parser.parse_args()
    results = measure(args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    r = results
    rows = [
        (
            "hermitcrab --help",
            f"{r['help_ms']} ms",
            f"{r['help_ratio']}x `python -c pass` ({r['python_pass_ms']} ms)",
        ),
        ("gateway ready", f"{r['gateway_ready_ms']} ms", "spawn -> /healthz answers (model loads after)"),
        (
            "`hermitcrab up`",
            f"{r['up_command_ms']} ms",
            "typed -> returns with the gateway up",
        ),
        (
            "idle RSS, no model",
            f"{r['idle_rss_no_model_mb']} MB",
            f"{r['rss_after_400_requests_no_model_mb']} MB after 400 API requests",
        ),
        (
            "idle RSS, model loaded",
            f"{r['idle_rss_model_loaded_mb']} MB",
            f"model loads in {r['model_load_s']} s; {r['rss_after_turns_mb']} MB after 3 turns",
        ),
        ("'say hello' prompt", f"{r['say_hello_prompt_tokens']} tokens", "system prompt + message"),
        (
            "cold turn",
            f"{r['cold_turn_ms']} ms",
            f"{r['cold_turn_prompt_tokens']} prompt + {r['cold_completion_tokens']} generated tokens",
        ),
        (
            "warm turn",
            f"{r['warm_turn_ms']} ms",
            f"{r['warm_turn_prompt_tokens']} prompt + {r['warm_completion_tokens']} generated tokens "
            f"(prefix reused)",
        ),
    ]
    width = max(len(a) for a, _, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
