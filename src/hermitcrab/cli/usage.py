"""`hermitcrab usage`: what the models cost, and today's spend against each agent's cap."""

from __future__ import annotations

from hermitcrab.cli.client import GatewayClient
from hermitcrab.cli.output import print_json
from hermitcrab.config.paths import Paths


def show(by: str, json_output: bool) -> None:
    data = GatewayClient(Paths.from_env()).request("GET", "/api/usage", params={"by": by})
    if json_output:
        print_json(data)
        return
    print(f"{by:<24} {'calls':>6} {'tokens in':>10} {'tokens out':>10} {'avg ms':>8} {'cost $':>10}")
    for row in data["rows"]:
        key, calls, tin, tout = row["key"], row["calls"], row["prompt_tokens"], row["completion_tokens"]
        print(
            f"{key!s:<24} {calls:>6} {tin:>10} {tout:>10} {row['avg_latency_ms']:>8} {row['cost_usd']:>10.4f}"
        )
    for agent, spent in data["today"]["spent_usd"].items():
        cap = data["today"]["caps_usd"][agent]
        print(f"today {agent}: ${spent:.4f}" + (f" of a ${cap:.4f} cap" if cap is not None else " (no cap)"))
    total, total_cap = data["today"]["total_usd"], data["today"]["total_cap_usd"]
    cap_text = f" of a ${total_cap:.4f} cap" if total_cap is not None else ""
    print(f"today, all agents: ${total:.4f}{cap_text}")
