"""Read a policy; a missing or broken policy is an error, never an open door."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hermitcrab.config.loader import load_yaml_model, parse_yaml_text
from hermitcrab.errors import ConfigError, PolicyError
from hermitcrab.policy.schema import Policy


def load_policy(path: Path) -> Policy:
    try:
        return load_yaml_model(path, Policy)
    except PolicyError:
        raise
    except ConfigError as exc:
        raise PolicyError(str(exc)) from None


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Validate policy text (as sent over the API, or kept in a sandbox's record)."""
    try:
        return load_yaml_model(source, Policy, parse_yaml_text(text, source))
    except PolicyError:
        raise
    except ConfigError as exc:
        raise PolicyError(str(exc)) from None


def policy_version(text: str) -> str:
    """A short, stable name for one version of a policy: its content hash."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]
