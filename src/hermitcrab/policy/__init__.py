"""The policy model: what a sandbox may read, write, run and reach. Pure: no I/O beyond reading."""

from hermitcrab.policy.loader import load_policy, parse_policy, policy_version
from hermitcrab.policy.rules import tool_decision
from hermitcrab.policy.schema import Policy

__all__ = ["Policy", "load_policy", "parse_policy", "policy_version", "tool_decision"]
