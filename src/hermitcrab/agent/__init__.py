"""The agent loop: context assembly, turns, tool dispatch, taint and the guard."""

from hermitcrab.agent.context import Persona
from hermitcrab.agent.loop import run_turn
from hermitcrab.agent.turn import Agent, Services, sandbox_name

__all__ = ["Agent", "Persona", "Services", "run_turn", "sandbox_name"]
