"""HermitCrab: a self-hosted, always-on AI agent that runs its tools in a sandbox."""

__version__ = "0.1.0"
