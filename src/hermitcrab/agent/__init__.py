"""The agent loop: context assembly, turns, tool dispatch, taint and the guard.

The loop and the tools load on first use: the gateway answers before it needs them.
"""

from typing import TYPE_CHECKING, Any

from hermitcrab.agent.context import Persona
from hermitcrab.agent.turn import Agent, Services, sandbox_name

if TYPE_CHECKING:
    from hermitcrab.agent.loop import run_turn

__all__ = ["Agent", "Persona", "Services", "run_turn", "sandbox_name"]


def __getattr__(name: str) -> Any:
    if name == "run_turn":
        from hermitcrab.agent.loop import run_turn

        return run_turn
    raise AttributeError(name)
