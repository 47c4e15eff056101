"""One turn: model → tool calls → results → model, until a reply.

Every step is an event in the session's log, committed before the next step acts on it:
turn.started, model.response, tool.call (its id is the call's idempotency key),
approval.asked/decided, tool.result, then exactly one reply or turn.failed. Token deltas
are live only. A turn cut short by a crash resumes from its events: a call with a result
is never run again; one without is run again only if read-only (or if it was still
waiting for a person, so never ran); otherwise the model is told it was interrupted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

from hermitcrab.agent import compaction, dispatch
from hermitcrab.agent.context import build_messages
from hermitcrab.agent.guard import OWNER, Taint, earlier
from hermitcrab.agent.skills import Skill
from hermitcrab.agent.turn import Agent, Services, Turn
from hermitcrab.errors import HermitCrabError
from hermitcrab.inference.base import CallAssembler, ChatRequest, TextPart, ToolCallPart, part_to_json
from hermitcrab.store.sessions import (
    APPROVAL_ASKED,
    APPROVAL_DECIDED,
    MODEL_RESPONSE,
    REPLY,
    TOOL_CALL,
    TOOL_RESULT,
    TURN_FAILED,
    TURN_STARTED,
    Event,
)
from hermitcrab.tools.base import ToolResult

log = logging.getLogger("hermitcrab.agent")

INTERRUPTED = (
    "interrupted: the gateway stopped while this call ran, so it may or may not have taken "
    "effect. Check its effect before you repeat it."
)


class TurnFailed(HermitCrabError):
    pass


async def run_turn(
    agent: Agent, services: Services, message: Event, timeout_seconds: float, fresh: bool = False
) -> Event:
    """Answer `message`; return the committed reply or turn.failed event. `fresh`: the
    message was committed just now, so no earlier run of this turn left events to resume."""
    data = message.data
    if services.before_turn is not None:
        await services.before_turn(agent.name)
    taint = Taint()
    if data.get("sender", OWNER) != OWNER:
        taint.add(f"a message from {data['sender']}")
    for source in data.get("taint") or ():  # a sub-agent inherits its parent's
        taint.add(source)
    shelf = agent.persona.shelf
    skills = shelf.offered() if shelf is not None else []  # looked at once for the turn's start
    turn = Turn(
        agent,
        services,
        message,
        _offered(agent, data.get("tools"), bool(skills)),
        taint,
        present=data.get("approvals", "ask") != "deny",
    )
    await _skills_taint(turn, skills)
    events = [] if fresh else await services.store.aio.sessions.turn_events(message.session_id, message.id)
    if not any(e.kind == TURN_STARTED for e in events):
        events.append(await turn.append(TURN_STARTED, {"agent": agent.name}))
    clock = time.perf_counter()
    partial: list[str] = []
    try:
        async with asyncio.timeout(timeout_seconds):
            kind, result = await _steps(turn, events, partial)
    except TimeoutError:
        kind, result = (
            TURN_FAILED,
            {"error": f"the turn did not finish within {timeout_seconds:g} s (gateway.turn_timeout_seconds)"},
        )
    except HermitCrabError as exc:
        kind, result = TURN_FAILED, {"error": str(exc)}
    except Exception as exc:  # a bug must fail this turn, not leave it unanswered forever
        log.exception("turn for message %s in session %s crashed", message.id, message.session_id)
        kind, result = TURN_FAILED, {"error": f"internal error: {type(exc).__name__}: {exc}"}
    if kind == TURN_FAILED:
        result["partial"] = "".join(partial)
    result["duration_ms"] = round((time.perf_counter() - clock) * 1000, 1)
    return await turn.append(kind, _with_taint(turn, result))


def _offered(agent: Agent, names: list[str] | None, any_skills: bool) -> dict[str, Any]:
    every = agent.tools if agent.extra_tools is None else {**agent.tools, **agent.extra_tools()}
    tools = dict(every) if names is None else {n: every[n] for n in names if n in every}
    if "skill" in tools and not any_skills:
        del tools["skill"]  # nothing to load: the tool would cost tokens and say nothing
    return tools


async def _skills_taint(turn: Turn, skills: list[Skill]) -> None:
    """A skill from the workspace shown in the prompt is content a sandbox may have
    written: unless it is the agent's own untainted work, the turn is tainted."""
    from hermitcrab.agent.provenance import file_taint

    for skill in skills:
        if skill.source != "workspace":
            continue
        relative = f"skills/{skill.folder.name}/{skill.file_name}"
        mark = await turn.store.aio.file_marks.get(turn.agent.name, relative)
        reason = file_taint(mark, turn.agent.workspace, relative, relative)
        if reason is not None:
            turn.taint.add(f"skill {skill.name} listed in the prompt: {reason}")


async def _steps(turn: Turn, events: list[Event], partial: list[str]) -> tuple[str, dict[str, Any]]:
    agent = turn.agent
    for event in events:  # what an earlier run of this turn already learnt
        if event.kind == TOOL_RESULT and event.data.get("taint"):
            turn.taint.add(event.data["taint"])
    persona = agent.persona.system_prompt()
    note, history = await compaction.history(turn, persona)
    for source in note.taint:  # what the compacted exchanges had read comes back with the note
        turn.taint.add(earlier(source))
    _taint_from(turn, history)
    system = "\n\n".join(p for p in (persona, note.render()) if p)
    steps = [e for e in events if e.kind in (MODEL_RESPONSE, TOOL_RESULT)]
    responses = [e for e in events if e.kind == MODEL_RESPONSE]
    budget = turn.message.data.get("token_budget")
    spent = sum(sum((e.data.get("usage") or {}).values()) for e in responses)
    last = responses[-1] if responses else None
    if last is not None and _calls(last):
        steps.extend(await _run_calls(turn, last, events))
    elif last is not None:
        return REPLY, _reply(agent, last, len(responses))
    while True:
        answered = [e for e in steps if e.kind == MODEL_RESPONSE]
        count = len(answered)
        if budget is not None and spent >= budget:
            raise TurnFailed(f"the turn spent its token budget ({spent} of {budget} tokens)")
        out_of_steps = count >= agent.config.max_tool_steps
        choice = turn.message.data.get("tool_choice") if count == 0 else None
        # A model that asks again for exactly what it already had (small ones loop so) has
        # its answer: the next step must reply.
        stuck = count >= 2 and _repeats(answered[-1], answered[:-1])
        request = ChatRequest(
            build_messages(system, history, turn.message, steps),
            # A message may bound each model call of its turn (an API client's max_tokens).
            max_tokens=turn.message.data.get("max_tokens"),
            tools=tuple(t.spec() for t in turn.tools.values()),
            tool_choice="none" if out_of_steps or stuck else choice,
        )
        response = await _ask_model(turn, request, partial, count)
        spent += sum((response.data.get("usage") or {}).values())
        steps.append(response)
        if not _calls(response):
            return REPLY, _reply(agent, response, count + 1)
        if stuck:
            raise TurnFailed("the agent asked again and again for the same tool call and gave no answer")
        if out_of_steps:
            raise TurnFailed(
                f"the agent used its {agent.config.max_tool_steps} tool steps "
                f"(agents.{agent.name}.max_tool_steps) and still asked for tools"
            )
        partial.clear()
        steps.extend(await _run_calls(turn, response, []))


def _taint_from(turn: Turn, history: list[tuple[Event, Event]]) -> None:
    """The earlier exchanges the model will see again: what tainted them taints this turn
    (a reply that quoted a web page brings the page's words back into the context)."""
    for asked, answered in history:
        if asked.data.get("sender", OWNER) != OWNER:
            turn.taint.add(f"an earlier message from {asked.data['sender']}")
        for source in answered.data.get("taint") or ():
            turn.taint.add(earlier(source))


async def _ask_model(turn: Turn, request: ChatRequest, partial: list[str], step: int) -> Event:
    calls = CallAssembler()
    usage: dict[str, int] = {}
    finish: str | None = None
    async for chunk in turn.agent.provider.stream(request):
        if chunk.text:
            partial.append(chunk.text)
            turn.live("token", {"text": chunk.text})
        for delta in chunk.tool_calls:
            calls.add(delta)
            turn.live("tool_call.delta", dataclasses.asdict(delta))
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
    text = "".join(partial).strip()
    # Ids of our own, unique in the turn: a model or server that repeats an id must not make
    # one call look like another (a resume skips a call whose id already has a result).
    ours = [
        dataclasses.replace(call, id=f"call_{turn.message.id}_{step}_{index}")
        for index, call in enumerate(calls.calls())
    ]
    parts = ([TextPart(text)] if text else []) + ours
    return await turn.append(
        MODEL_RESPONSE,
        {
            "parts": [part_to_json(p) for p in parts],
            "usage": usage,
            "finish_reason": finish,
            "model": turn.agent.config.model,
        },
    )


def _repeats(response: Event, earlier: list[Event]) -> bool:
    """Whether every call of `response` was already made, with the same arguments."""
    made = {_call_key(c) for e in earlier for c in _calls(e)}
    calls = _calls(response)
    return bool(calls) and all(_call_key(c) in made for c in calls)


def _call_key(call: ToolCallPart) -> tuple[str, str]:
    try:
        return call.name, json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
    except ValueError:
        return call.name, call.arguments


def _calls(response: Event) -> list[ToolCallPart]:
    return [
        ToolCallPart(p["id"], p["name"], p["arguments"])
        for p in response.data["parts"]
        if p["kind"] == "tool_call"
    ]


def _reply(agent: Agent, response: Event, steps: int) -> dict[str, Any]:
    text = "".join(p["text"] for p in response.data["parts"] if p["kind"] == "text").strip()
    return {
        "text": text,
        "model": agent.config.model,
        "finish_reason": response.data.get("finish_reason"),
        "usage": response.data.get("usage") or {},
        "steps": steps,
    }


def _with_taint(turn: Turn, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "taint": list(turn.taint.sources)} if turn.taint else data


async def _run_calls(turn: Turn, response: Event, earlier: list[Event]) -> list[Event]:
    """Run the response's calls: read-only ones side by side, the rest one at a time, in
    order. Each call is committed before it runs; `earlier` are events of a previous run.
    Returns the new results, in the order of the calls."""
    calls = _calls(response)
    by_call = {e.data["call_id"]: e for e in earlier if e.kind == TOOL_CALL}
    done = {e.data["call_id"] for e in earlier if e.kind == TOOL_RESULT}
    results: dict[str, Event] = {}
    call_events: dict[str, Event] = {}
    for call in calls:
        if call.id in done:
            continue
        event = by_call.get(call.id)
        if event is not None and _may_have_run(event, earlier) and not _read_only(turn, call):
            results[call.id] = await _result(turn, call, event, ToolResult(INTERRUPTED, error=True))
            continue
        call_events[call.id] = event or await turn.append(
            TOOL_CALL, {"call_id": call.id, "name": call.name, "arguments": call.arguments}
        )
    batch: list[ToolCallPart] = []
    for call in calls:
        if call.id not in call_events:
            continue
        if _read_only(turn, call):
            batch.append(call)
            continue
        results.update(await _run_batch(turn, batch, call_events))
        batch = []
        results.update(await _run_batch(turn, [call], call_events))
    results.update(await _run_batch(turn, batch, call_events))
    return [results[c.id] for c in calls if c.id in results]


def _read_only(turn: Turn, call: ToolCallPart) -> bool:
    tool = turn.tools.get(call.name)
    return tool is not None and tool.read_only


def _may_have_run(call_event: Event, earlier: list[Event]) -> bool:
    """False only when the call was still waiting for a person (so it never started)."""
    asked = [e for e in earlier if e.kind == APPROVAL_ASKED and e.data.get("call_event") == call_event.id]
    decided = [e for e in earlier if e.kind == APPROVAL_DECIDED and e.data.get("call_event") == call_event.id]
    return not asked or any(e.data.get("state") == "approved" for e in decided)


async def _run_batch(
    turn: Turn, calls: list[ToolCallPart], call_events: dict[str, Event]
) -> dict[str, Event]:
    async def one(call: ToolCallPart) -> Event:
        result = await dispatch.run_call(turn, call, call_events[call.id])
        return await _result(turn, call, call_events[call.id], result)

    done = await asyncio.gather(*(one(c) for c in calls))
    return {c.id: e for c, e in zip(calls, done, strict=True)}


async def _result(turn: Turn, call: ToolCallPart, call_event: Event, result: ToolResult) -> Event:
    if result.taint:
        turn.taint.add(result.taint)
    return await turn.append(
        TOOL_RESULT,
        {
            "call_id": call.id,
            "call_event": call_event.id,
            "name": call.name,
            "content": result.content,
            "error": result.error,
            "taint": result.taint,
        },
    )
