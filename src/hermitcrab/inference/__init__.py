"""Model providers behind one small seam; which one an agent uses is configuration."""

from hermitcrab.inference.base import ChatMessage, ChatRequest, Chunk, Completion, Provider, complete
from hermitcrab.inference.registry import build_provider

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Chunk",
    "Completion",
    "Provider",
    "build_provider",
    "complete",
]
