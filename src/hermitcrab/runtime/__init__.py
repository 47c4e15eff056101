"""The sandbox runtime: one sandbox per agent, created on first use and kept warm; its
door and CA; live policy reload; snapshots; the exec audit. It knows no agent loop.

`SandboxRuntime` loads on first use: the gateway answers before it needs it.
"""

from typing import TYPE_CHECKING, Any

from hermitcrab.sandbox.base import WORKSPACE_MOUNT, ExecResult, OutputChunk, Stream

if TYPE_CHECKING:
    from hermitcrab.runtime.sandboxes import Managed, SandboxRuntime

__all__ = ["WORKSPACE_MOUNT", "ExecResult", "Managed", "OutputChunk", "SandboxRuntime", "Stream"]


def __getattr__(name: str) -> Any:
    if name in ("Managed", "SandboxRuntime"):
        from hermitcrab.runtime import sandboxes

        return getattr(sandboxes, name)
    raise AttributeError(name)
