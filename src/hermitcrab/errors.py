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

    retryable: bool = False  # worth trying the next provider of the route
    retry_after: float | None = None  # seconds the provider asked us to wait


class ProviderUnavailable(ProviderError):
    """Rate-limited (429), failing (5xx), unreachable or too slow: the route may fail over."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GatewayError(HermitCrabError):
    """The daemon could not start, or could not be reached."""


class PolicyError(ConfigError):
    """A policy is missing or invalid, or forbids what was asked (fail closed)."""


class SandboxError(HermitCrabError):
    """A sandbox could not be created, reached or used."""


class SandboxNotFound(SandboxError):
    """No sandbox has that name."""
