"""The agent loop: context assembly and turns."""

from hermitcrab.agent.context import Persona
from hermitcrab.agent.loop import Agent, run_turn

__all__ = ["Agent", "Persona", "run_turn"]
