"""The policy model: what a sandbox may read, write, run and reach. Pure: no I/O beyond reading."""

from hermitcrab.policy.loader import load_policy
from hermitcrab.policy.schema import Policy

__all__ = ["Policy", "load_policy"]
