"""The exception tree: catch at the depth you care about.

Every message says what failed, where, and how to fix it.
"""

from __future__ import annotations


class HermitCrabError(Exception):
    """Root of every error HermitCrab raises on purpose."""


class ConfigError(HermitCrabError):
    """A configuration or policy file is missing, malformed or invalid."""


class StoreError(HermitCrabError):
    """The SQLite store could not be opened, migrated or written."""


class ProviderError(HermitCrabError):
    """A model provider failed to load or to answer."""


class GatewayError(HermitCrabError):
    """The daemon could not start, or could not be reached."""


class PolicyError(ConfigError):
    """A policy is missing or invalid, or forbids what was asked (fail closed)."""


class SandboxError(HermitCrabError):
    """A sandbox could not be created, reached or used."""


class SandboxNotFound(SandboxError):
    """No sandbox has that name."""
