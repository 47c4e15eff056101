"""Sandboxes: create them, run commands in them, destroy them. `local` is bubblewrap +
Landlock + seccomp + rlimits on this machine."""

from hermitcrab.sandbox.base import ExecResult, OutputChunk, SandboxSpec

__all__ = ["ExecResult", "OutputChunk", "SandboxSpec"]
