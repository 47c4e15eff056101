"""Read a policy file; a missing or broken policy is an error, never an open door."""

from __future__ import annotations

from pathlib import Path

from hermitcrab.config.loader import load_yaml_model
from hermitcrab.policy.schema import Policy


def load_policy(path: Path) -> Policy:
    return load_yaml_model(path, Policy)
