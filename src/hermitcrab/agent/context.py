"""Assemble what the model sees: the persona from the workspace files, then the conversation.

The system prompt must be byte-identical from turn to turn (no clocks, no counters), so
that llama.cpp can reuse the evaluated prefix of the previous turn.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from hermitcrab.config.paths import WORKSPACE_FILES
from hermitcrab.config.plain_files import read_plain
from hermitcrab.inference.base import ChatMessage, ToolCallPart, ToolResultPart, part_from_json
from hermitcrab.store.sessions import MODEL_RESPONSE, TOOL_RESULT, Event

if TYPE_CHECKING:
    from hermitcrab.agent.skills import Shelf

# A line that is only "(...)" is a template placeholder; it costs tokens and says nothing.
_PLACEHOLDER = re.compile(r"^\s*\(.*\)\s*$")


# The workspace is the sandbox's to write: a persona file there may be a link to a secret
# of the host's, or huge. The gateway reads only plain files, and only this much of each.
MAX_PERSONA_BYTES = 64 * 1024


def read_workspace_file(workspace: Path, name: str, limit: int) -> str | None:
    """A plain file directly in the workspace, never through a symbolic link; None else."""
    try:
        return read_plain(workspace, name, limit)[:limit].decode(errors="replace")
    except OSError:
        return None


class Persona:
    """The system prompt, rebuilt only when a workspace file changes."""

    def __init__(self, workspace: Path, shelf: Shelf | None = None) -> None:
        self.workspace = workspace
        self.shelf = shelf  # the agent's skills: their names and descriptions close the prompt
        self._files = [str(workspace / name) for name in WORKSPACE_FILES]  # looked at every turn
        self._stamp: list[tuple[int, int, int]] | None = None
        self._prompt = ""

    def system_prompt(self) -> str:
        stamp = [_identity(path) for path in self._files]
        if stamp != self._stamp:
            self._prompt = "\n\n".join(
                section for name in WORKSPACE_FILES if (section := _section(self.workspace, name))
            )
            self._stamp = stamp
        if self.shelf is None:
            return self._prompt
        skills = self.shelf.prompt_section()
        return f"{self._prompt}\n\n{skills}" if skills and self._prompt else skills or self._prompt


def _identity(path: str) -> tuple[int, int, int]:
    try:
        info = os.lstat(path)  # the link itself: its target may be anything on the host
    except OSError:
        return (-1, -1, -1)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _section(workspace: Path, name: str) -> str:
    text = read_workspace_file(workspace, name, MAX_PERSONA_BYTES)
    if text is None:
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
    results: list[ToolResultPart] = []
    order: dict[str, int] = {}  # the calls of the last response, in the order it made them

    def flush() -> None:
        # Calls run side by side finish in any order; the model reads them in its own.
        if results:
            results.sort(key=lambda r: order.get(r.call_id, len(order)))
            messages.append(ChatMessage("tool", tuple(results)))
            results.clear()

    for event in steps:
        if event.kind == MODEL_RESPONSE:
            flush()
            parts = tuple(part_from_json(p) for p in event.data["parts"])
            order = {p.id: i for i, p in enumerate(q for q in parts if isinstance(q, ToolCallPart))}
            messages.append(ChatMessage("assistant", parts))
        elif event.kind == TOOL_RESULT:
            data = event.data
            results.append(ToolResultPart(data["call_id"], data["content"], data["error"], data["name"]))
    flush()
    return messages
