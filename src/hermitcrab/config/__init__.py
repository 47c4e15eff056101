"""Typed configuration, file locations and loading with clear errors."""

from hermitcrab.config.loader import load_config, load_yaml_model
from hermitcrab.config.paths import Paths
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
