"""Compaction: when a session's exchanges near the model's window (or pass
`max_history_messages`), the older ones become a structured note, committed as a
`compaction` event, and the model sees the note instead of them.

What must not be lost is not left to the model's good will:
- standing instructions, decisions and facts about the user in the note are only ever
  added to: a later summary that forgets one does not drop it;
- an open task stays until a summary says it is done;
- a message the person pinned, and one that reads as a standing rule ("always…",
  "never…", "from now on…"), is carried word for word;
- the system prompt and the workspace files are never part of what is compacted, and
  only whole exchanges are (a turn's tool calls and results are never split).

First the model is asked what must last beyond the session (the memory flush): those lines
go to today's memory note. A summary that cannot be had (unreadable, or the model failed)
still makes a note: what the last note kept, and the pinned and rule-like messages word for
word; the model is not asked again until the next compaction. (The session's log keeps
every exchange: what a note leaves out is out of the context, not lost.)
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hermitcrab.agent.guard import OWNER
from hermitcrab.inference.base import ChatMessage, ChatRequest
from hermitcrab.store.sessions import COMPACTION, Event

if TYPE_CHECKING:
    from hermitcrab.agent.turn import Turn

log = logging.getLogger("hermitcrab.agent")

KEPT = ("instructions", "decisions", "user_facts")  # only ever added to
SECTIONS = (*KEPT, "open_tasks")
TITLES = {
    "instructions": "Standing instructions",
    "pinned": "Pinned messages (word for word)",
    "decisions": "Decisions",
    "open_tasks": "Open tasks",
    "user_facts": "Facts about the user",
}
MAX_ITEMS = 40
MAX_ITEM_CHARS = 400
DEFAULT_WINDOW = 32_768
RULE = re.compile(r"\b(always|never|from now on|every time|in future|whenever|make sure (to|you))\b", re.I)
PROMPT = """You compact a conversation so that it can go on in less space.
Read the previous note (JSON) and the older exchanges, and answer with one JSON object:
{"instructions": [...], "decisions": [...], "open_tasks": [...], "done": [...],
 "user_facts": [...], "remember": [...]}
- instructions: standing rules the user gave (how to behave, what to always or never do).
- decisions: what was decided, and why, in a line each.
- open_tasks: tasks asked for and not finished; done: open tasks of the note now finished.
- user_facts: facts about the user.
- remember: facts worth keeping in long-term memory beyond this conversation.
Short lines, no commentary, JSON only."""


@dataclass
class Note:
    through: int = 0  # the last message (event id) the note covers
    sections: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    pinned: list[str] = field(default_factory=list)
    taint: list[str] = field(default_factory=list)  # what the compacted exchanges had read

    @classmethod
    def from_event(cls, event: Event | None) -> Note:
        if event is None:
            return cls()
        data = event.data
        sections = {s: [str(i) for i in data.get("sections", {}).get(s, [])] for s in SECTIONS}
        return cls(
            int(data.get("through", 0)), sections, list(data.get("pinned", [])), list(data.get("taint", []))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "through": self.through,
            "sections": self.sections,
            "pinned": self.pinned,
            "taint": self.taint,
        }

    def render(self) -> str:
        """The note as the model reads it, after the system prompt."""
        if not any(self.sections.values()) and not self.pinned:
            return ""
        parts = ["## Earlier in this conversation (compacted)"]
        for key in ("instructions", "pinned", "decisions", "open_tasks", "user_facts"):
            items = self.pinned if key == "pinned" else self.sections[key]
            if items:
                parts.append(f"### {TITLES[key]}\n" + "\n".join(f"- {i}" for i in items))
        return "\n\n".join(parts)


def tokens(text: str) -> int:
    """An estimate (a token is about four characters of English): enough to decide when."""
    return len(text) // 4 + 1


def window(turn: Turn) -> int:
    configured = turn.agent.config.compaction.context_tokens
    return configured or getattr(turn.agent.provider, "context_tokens", None) or DEFAULT_WINDOW


async def history(turn: Turn, system_prompt: str) -> tuple[Note, list[tuple[Event, Event]]]:
    """The note so far and the exchanges after it, compacting first when they are too many
    or too long for the window."""
    event, pairs = await turn.store.aio.sessions.since_compaction(turn.session_id, turn.message.id, 1000)
    note = Note.from_event(event)
    config = turn.agent.config
    cap = max(config.max_history_messages // 2, 2)
    # At most half the cap stays after a compaction: the next one is at least that many turns
    # away, not one turn later (each costs a model call).
    keep = min(config.compaction.keep_exchanges, max(cap // 2, 1))
    if len(pairs) <= keep:
        return note, pairs
    size = tokens(system_prompt) + tokens(note.render()) + tokens(turn.message.data.get("text", ""))
    size += sum(tokens(a.data.get("text", "")) + tokens(b.data.get("text", "")) for a, b in pairs)
    if len(pairs) <= cap and size <= window(turn) * config.compaction.at_share:
        return note, pairs
    older, recent = pairs[:-keep], pairs[-keep:]
    compacted = await _compact(turn, note, older)
    await turn.append(COMPACTION, compacted.to_json())
    return compacted, recent


async def _compact(turn: Turn, note: Note, older: list[tuple[Event, Event]]) -> Note:
    transcript = "\n\n".join(
        f"User: {a.data.get('text', '')}\nAssistant: {b.data.get('text', '')}" for a, b in older
    )
    budget = int(window(turn) * 0.5) * 4  # characters: the transcript may take half the window
    if len(transcript) > budget:
        transcript = "[…older part cut…]\n" + transcript[-budget:]
    request = ChatRequest(
        [
            ChatMessage.of("system", PROMPT),
            ChatMessage.of(
                "user", f"Previous note:\n{json.dumps(note.sections)}\n\nOlder exchanges:\n{transcript}"
            ),
        ],
        tool_choice="none",
    )
    try:
        text = "".join([chunk.text async for chunk in turn.agent.provider.stream(request) if chunk.text])
        answer = _parse(text)
    except Exception as exc:
        # A model that cannot summarise (a small one, an outage) still gets its rules kept:
        # the note carries what it carried, the pinned and rule-like messages word for word,
        # and the model is not asked again before the next compaction.
        log.warning("the compaction summary could not be had (%s); the note keeps what it kept", exc)
        answer = {}
    merged = Note(
        older[-1][0].id, {s: list(note.sections[s]) for s in SECTIONS}, list(note.pinned), list(note.taint)
    )
    for key in KEPT:
        _add(merged.sections[key], answer.get(key))
    done = {_line(d) for d in answer.get("done") or [] if isinstance(d, str)}
    merged.sections["open_tasks"] = [t for t in merged.sections["open_tasks"] if t not in done]
    _add(merged.sections["open_tasks"], [t for t in answer.get("open_tasks") or [] if _line(t) not in done])
    for asked, answered in older:
        said, sender = str(asked.data.get("text", "")), asked.data.get("sender", OWNER)
        if asked.data.get("pinned"):
            _add(merged.pinned, [said], limit=MAX_ITEMS)
        elif sender == OWNER and RULE.search(said):
            _add(merged.sections["instructions"], [said])  # the person's own words, as said
        _add(merged.taint, list(answered.data.get("taint") or ()))
        if sender != OWNER:
            _add(merged.taint, [f"a message from {sender}"])
    remember = [r for r in answer.get("remember") or [] if isinstance(r, str) and r.strip()]
    if remember:
        await _flush(turn, remember[:MAX_ITEMS])
    return merged


def _parse(text: str) -> dict[str, Any]:
    import json_repair

    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"the summary is not JSON: {text[:200]!r}")
    value = json_repair.loads(text[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError(f"the summary is not a JSON object: {text[:200]!r}")
    return value


def _line(item: Any) -> str:
    return " ".join(str(item).split())[:MAX_ITEM_CHARS]


def _add(items: list[str], new: Any, limit: int = MAX_ITEMS) -> None:
    for item in new if isinstance(new, list) else []:
        line = _line(item)
        if line and line not in items:
            items.append(line)
    del items[: max(len(items) - limit, 0)]  # past the limit, the oldest go first


async def _flush(turn: Turn, lines: list[str]) -> None:
    """The memory flush: what the model says must last goes to today's memory note."""
    import asyncio

    from hermitcrab.agent.dispatch import tool_context
    from hermitcrab.agent.provenance import record_write
    from hermitcrab.tools.memory import append_note, today_note

    path = today_note()
    try:
        ctx = await tool_context(turn, call_id="compaction")
        failure = await append_note(ctx, path, lines)
        if failure is None:  # marked like any write: a tainted turn's note taints its reader
            taint = turn.taint.describe() or None
            await asyncio.to_thread(record_write, turn.store, turn.agent.name, turn.agent.workspace, path,
                                    taint, turn.session_id)  # fmt: skip
    except Exception as exc:
        failure = str(exc)
    if failure:
        log.warning("the memory flush before compaction failed: %s", failure)
