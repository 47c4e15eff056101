"""Assemble what the model sees: the persona from the workspace files, then the conversation.

The system prompt must be byte-identical from turn to turn (no clocks, no counters), so
that llama.cpp can reuse the evaluated prefix of the previous turn.
"""

from __future__ import annotations

import re
from pathlib import Path

from hermitcrab.config.paths import WORKSPACE_FILES
from hermitcrab.inference.base import ChatMessage, Part, ToolResultPart, part_from_json
from hermitcrab.store.sessions import MODEL_RESPONSE, TOOL_RESULT, Event

# A line that is only "(...)" is a template placeholder; it costs tokens and says nothing.
_PLACEHOLDER = re.compile(r"^\s*\(.*\)\s*$")


class Persona:
    """The system prompt, rebuilt only when a workspace file changes."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self._stamp: tuple[tuple[str, int], ...] | None = None
        self._prompt = ""

    def system_prompt(self) -> str:
        stamp = tuple((name, _mtime_ns(self.workspace / name)) for name in WORKSPACE_FILES)
        if stamp != self._stamp:
            self._prompt = "\n\n".join(
                section for name in WORKSPACE_FILES if (section := _section(self.workspace / name))
            )
            self._stamp = stamp
        return self._prompt


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _section(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError:
        return ""
    lines = [line for line in text.strip().splitlines() if not _PLACEHOLDER.match(line)]
    if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        return ""  # only headings left: nothing to say
    return "\n".join(lines).strip()


def build_messages(
    system_prompt: str, exchanges: list[tuple[Event, Event]], message: Event, steps: list[Event] = ()
) -> list[ChatMessage]:
    """System prompt, earlier exchanges (their question and final answer: the tool steps of
    past turns cost tokens forever and are in the log if wanted), the message, then this
    turn's own steps as parts: each model response, then the results of its calls."""
    messages = [ChatMessage.of("system", system_prompt)] if system_prompt else []
    for asked, answered in exchanges:
        messages.append(ChatMessage.of("user", asked.data["text"]))
        messages.append(ChatMessage.of("assistant", answered.data["text"]))
    messages.append(ChatMessage.of("user", message.data["text"]))
    results: list[Part] = []
    for event in steps:
        if event.kind == MODEL_RESPONSE:
            if results:
                messages.append(ChatMessage("tool", tuple(results)))
                results = []
            messages.append(ChatMessage("assistant", tuple(part_from_json(p) for p in event.data["parts"])))
        elif event.kind == TOOL_RESULT:
            results.append(
                ToolResultPart(
                    event.data["call_id"], event.data["content"], event.data["error"], event.data["name"]
                )
            )
    if results:
        messages.append(ChatMessage("tool", tuple(results)))
    return messages
