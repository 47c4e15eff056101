"""Typed configuration, file locations and loading with clear errors.

The names below load on first use: `hermitcrab.config.paths` is wanted where pydantic
(the schema, ~100 ms to import) is not yet, as in `hermitcrab up` before the daemon starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hermitcrab.config.paths import Paths

if TYPE_CHECKING:
    from hermitcrab.config.loader import load_config, load_yaml_model
    from hermitcrab.config.schema import AgentConfig, Config, GatewayConfig, ModelConfig

__all__ = [
    "AgentConfig",
    "Config",
    "GatewayConfig",
    "ModelConfig",
    "Paths",
    "load_config",
    "load_yaml_model",
]


def __getattr__(name: str) -> Any:
    if name in ("load_config", "load_yaml_model"):
        from hermitcrab.config import loader

        return getattr(loader, name)
    if name in ("AgentConfig", "Config", "GatewayConfig", "ModelConfig"):
        from hermitcrab.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'hermitcrab.config' has no attribute {name!r}")
