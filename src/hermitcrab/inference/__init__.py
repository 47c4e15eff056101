"""Model providers behind one small seam; which one an agent uses is configuration."""

from hermitcrab.inference.base import (
    CallAssembler,
    ChatMessage,
    ChatRequest,
    Chunk,
    Completion,
    Part,
    Provider,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    complete,
)
from hermitcrab.inference.registry import build_provider

__all__ = [
    "CallAssembler",
    "ChatMessage",
    "ChatRequest",
    "Chunk",
    "Completion",
    "Part",
    "Provider",
    "TextPart",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolResultPart",
    "ToolSpec",
    "build_provider",
    "complete",
]
