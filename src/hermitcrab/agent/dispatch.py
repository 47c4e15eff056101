"""One tool call, from the model's JSON to a result the model can act on.

Every failure becomes a result, never a crash or a hung turn: arguments that do not parse
(repaired when that is safe), an unknown tool, arguments the schema refuses, a policy
that denies, a person who says no, a timeout, a tool that breaks. A huge result is cut
and the whole of it saved to a workspace file whose path the model is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hermitcrab.agent.guard import hold_reason
from hermitcrab.agent.provenance import file_taint, record_write, workspace_taint
from hermitcrab.inference.base import ToolCallPart
from hermitcrab.policy import Policy, tool_decision
from hermitcrab.policy.schema import DEFAULT_READ_ONLY
from hermitcrab.store import AuditEntry
from hermitcrab.store.sessions import APPROVAL_ASKED, APPROVAL_DECIDED, Event
from hermitcrab.tools.base import Args, Tool, ToolContext, ToolResult
from hermitcrab.tools.files import write_in_sandbox
from hermitcrab.tools.shell import workspace_path

if TYPE_CHECKING:
    from hermitcrab.agent.turn import Turn

log = logging.getLogger("hermitcrab.agent")

OUTPUT_FOLDER = ".hermitcrab/tool-output"  # in the workspace: where cut results are kept whole


# Arguments longer than this are refused unread: parsing (and above all repairing) them
# would hold a worker for seconds, and no tool of ours takes that much in one call.
MAX_ARGUMENT_CHARS = 256 * 1024
# Repairing is slower than parsing: only this much malformed JSON is worth the attempt.
MAX_REPAIRED_CHARS = 16 * 1024


def parse_arguments(raw: str) -> tuple[dict[str, Any] | None, str | None]:
    """The call's arguments as a dict; a repair note, or an error the model can act on.
    Runs on a worker thread: a hostile argument may be slow to read."""
    text = raw.strip() or "{}"
    if len(text) > MAX_ARGUMENT_CHARS:
        return None, f"the arguments are {len(text)} characters, more than {MAX_ARGUMENT_CHARS}; send less"
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "the arguments nest too deeply to read; send a flat JSON object"
    except ValueError as exc:
        if len(text) > MAX_REPAIRED_CHARS:
            return None, f"the arguments are not valid JSON ({exc}); send one JSON object"
        from json_repair import repair_json

        try:
            repaired = repair_json(text, return_objects=True)
        except Exception:  # the repairer has its own limits (nesting); then it is just invalid
            repaired = None
        if isinstance(repaired, dict) and repaired:
            return repaired, f"repaired malformed JSON ({exc})"
        return None, f"the arguments are not valid JSON ({exc}); send one JSON object"
    if not isinstance(value, dict):
        return None, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, None


def explain(error: ValidationError, tool: Tool) -> str:
    problems = "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or '(arguments)'}: {e['msg']}" for e in error.errors()
    )
    schema = json.dumps(tool.spec().parameters, separators=(",", ":"))
    return f"invalid arguments for '{tool.name}': {problems}. expected: {schema}"


async def run_call(turn: Turn, call: ToolCallPart, call_event: Event) -> ToolResult:
    """Decide and run one call; the returned result is what the model is told."""
    tool = turn.tools.get(call.name)
    if tool is None:
        known = ", ".join(sorted(turn.tools)) or "none"
        return ToolResult(f"unknown tool '{call.name}'. available: {known}", error=True)
    values, note = await asyncio.to_thread(parse_arguments, call.arguments)
    if values is None:
        return ToolResult(f"{call.name}: {note}", error=True)
    try:
        args = tool.Args.model_validate(values)
    except ValidationError as exc:
        return ToolResult(explain(exc, tool), error=True)
    try:
        result = await _decide_and_run(turn, tool, args, call_event)
    except Exception as exc:  # a broken tool must fail the call, not the turn
        log.exception("tool crashed", extra={"tool": call.name, "session": turn.session_id})
        result = ToolResult(f"{call.name} failed: {type(exc).__name__}: {exc}", error=True)
    if note and not result.error:
        result.content = f"[{note}]\n{result.content}"
    return await _fit(turn, result, call_event)


async def _decide_and_run(turn: Turn, tool: Tool, args: Args, call_event: Event) -> ToolResult:
    runtime = await turn.sandbox_runtime()
    policy = runtime.get(turn.sandbox).policy
    decision = tool_decision(policy, tool.name, tool.command(args))
    summary = tool.summary(args)
    if decision.verdict == "deny":
        _audit(turn, tool, summary, "denied", decision.rule, None)
        return ToolResult(
            f"denied by the policy ({decision.rule}): '{tool.name}' may not run here. "
            "fix: a person can add it to tools.allow in policy.yaml",
            error=True,
        )
    why = hold_reason(tool, args, turn.taint, set(turn.tools))
    if decision.verdict == "ask" or why:
        why = why or f"the policy asks a person first ({decision.rule})"
        refusal = await _ask(turn, tool, args, summary, decision.rule, why, call_event)
        if refusal is not None:
            return refusal
    else:
        _audit(turn, tool, summary, "allowed", decision.rule, None)
    return await _run(turn, tool, args, call_event)


async def _ask(
    turn: Turn, tool: Tool, args: Args, summary: str, rule: str, why: str, call_event: Event
) -> ToolResult | None:
    """Hold the call for a person; None when approved, else the result that says no."""
    approvals = turn.approvals
    _audit(turn, tool, summary, "held", rule, f"{why}; taint: {turn.taint.describe() or 'none'}")
    if approvals is None:
        return ToolResult(f"held for a person ({why}), but this gateway has no approval inbox", error=True)
    runtime = await turn.sandbox_runtime()
    subject = {
        "tool": tool.name,
        "arguments": args.model_dump(exclude_defaults=True),
        "summary": summary,
        "risk": tool.risk,
        "rule": rule,
        "why": why,
        "taint": list(turn.taint.sources),
        "command": tool.command(args),
        "details": tool.details(args),
        "agent": turn.agent.name,
    }
    timeout = runtime.get(turn.sandbox).policy.tools.approval_timeout_seconds
    approval = approvals.open("tool", turn.sandbox, subject, timeout, session_id=turn.session_id)
    await turn.append(APPROVAL_ASKED, {"approval_id": approval.id, "call_event": call_event.id, **subject})
    approval = await approvals.wait(approval, present=turn.present)
    await turn.append(
        APPROVAL_DECIDED,
        {
            "approval_id": approval.id,
            "call_event": call_event.id,
            "state": approval.state,
            "by": approval.decided_by,
            "reason": approval.reason,
            "always": approval.always,
        },
    )
    if approval.state == "approved":
        _audit(turn, tool, summary, "approved", rule, f"approval {approval.id} by {approval.decided_by}")
        return None
    _audit(turn, tool, summary, "denied", rule, f"approval {approval.id} {approval.state}: {approval.reason}")
    how = (
        "a person can approve it in a terminal (`hermitcrab ask` answers y/N), on the dashboard, "
        "or with `hermitcrab approve ID` while it waits"
    )
    said = approval.reason or f"a person ({approval.decided_by}) said no"
    return ToolResult(
        f"not run: '{tool.name}' was held for a person's approval because {why}, and it was "
        f"{approval.state} ({said}). Do not retry it unchanged; {how}.",
        error=True,
    )


async def _run(turn: Turn, tool: Tool, args: Args, call_event: Event) -> ToolResult:
    """Run the call under its time limit (a wait for a person has the approval's own)."""
    limit = turn.agent.config.tool_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            return await _run_unlimited(turn, tool, args, call_event)
    except TimeoutError:
        return ToolResult(
            f"{tool.name} did not finish within {limit:g} s (agents.{turn.agent.name}.tool_timeout_seconds); "
            "it was stopped",
            error=True,
        )


async def tool_context(turn: Turn, call_id: str) -> ToolContext:
    """What a tool call of this turn may reach (its agent's sandbox, workspace, store)."""
    runtime = await turn.sandbox_runtime()
    return ToolContext(
        agent=turn.agent.name,
        session_id=turn.session_id,
        sandbox=turn.sandbox,
        runtime=runtime,
        store=turn.store,
        workspace=turn.agent.workspace,
        actor=turn.actor,
        taint=tuple(turn.taint.sources),
        present=turn.present,
        call_id=call_id,
        post=turn.post,
        approvals=turn.approvals,
    )


async def _run_unlimited(turn: Turn, tool: Tool, args: Args, call_event: Event) -> ToolResult:
    ctx = await tool_context(turn, str(call_event.id))
    ctx.progress = lambda data: turn.live(
        "tool.progress", {"call_event": call_event.id, "call_id": call_event.data.get("call_id"), **data}
    )
    runtime = ctx.runtime
    result = await tool.run(args, ctx)
    agent, workspace, store = turn.agent.name, turn.agent.workspace, turn.store
    if (
        not result.error
        and (written := tool.written_path(args)) is not None
        and (path := workspace_path(written)) is not None
    ):
        # Taint outlives the turn: what a tainted turn wrote taints whoever reads it later.
        taint = turn.taint.describe() or None
        await asyncio.to_thread(record_write, store, agent, workspace, path, taint, turn.session_id)
    # What a call read taints the turn even when the call failed: a failing command's output
    # (a test run, a diff, a traceback) is as untrusted as any other.
    if result.taint is None and (read := tool.read_path(args)) is not None:
        real = (result.data or {}).get("real_path") or read
        path = workspace_path(real)
        mark = await store.aio.file_marks.get(agent, path or "") if path else None
        shown = read if workspace_path(read) == path else f"{read} (a link to {real})"
        result.taint = file_taint(mark, workspace, path, shown)
    for read in (result.data or {}).get("read_paths", []) if result.taint is None else []:
        path = workspace_path(read)  # memory_search: the files its lines came from
        mark = await store.aio.file_marks.get(agent, path or "") if path else None
        result.taint = file_taint(mark, workspace, path, read)
        if result.taint is not None:
            break
    if result.taint is None and tool.reads_workspace:
        result.taint = _reach_taint(runtime.get(turn.sandbox).policy) if tool.risk == "exec" else None
        result.taint = result.taint or await asyncio.to_thread(workspace_taint, store, agent, workspace)
    return result


async def _fit(turn: Turn, result: ToolResult, call_event: Event) -> ToolResult:
    limit = turn.agent.config.max_tool_result_chars
    if len(result.content) <= limit:
        return result
    whole = result.content
    path = f"{OUTPUT_FOLDER}/call-{call_event.id}.txt"
    saved = f"; the whole result is in {path} (read parts of it with exec: sed -n, grep)"
    try:
        runtime = await turn.sandbox_runtime()
        written = await write_in_sandbox(runtime, turn.sandbox, turn.actor, path, whole.encode())
        if written.exit_code != 0:
            saved = "; it could not be saved whole"
        else:
            await asyncio.to_thread(
                record_write,
                turn.store,
                turn.agent.name,
                turn.agent.workspace,
                path,
                result.taint,
                turn.session_id,
            )
    except Exception as exc:  # the cut result still goes back
        saved = f"; it could not be saved whole ({exc})"
    result.content = f"{whole[:limit]}\n[cut at {limit} of {len(whole)} characters{saved}]"
    return result


def _reach_taint(policy: Policy) -> str | None:
    """A command may read whatever the policy lets it reach beyond the workspace and the
    system: the network, or host folders bound in. Its output is then untrusted."""
    network = policy.network
    if network.default == "ask" or any(rule.access != "deny" for rule in network.rules):
        return "command output (the network policy lets commands reach the network)"
    bound = [
        *policy.filesystem.read_write,
        *(p for p in policy.filesystem.read_only if p not in DEFAULT_READ_ONLY),
    ]
    if bound:
        return f"command output (the policy lets commands read {', '.join(bound)})"
    return None


def _audit(turn: Turn, tool: Tool, summary: str, outcome: str, rule: str, detail: str | None) -> None:
    if turn.runtime is None:
        return
    turn.runtime.audit.record_soon(
        AuditEntry(
            actor=turn.actor,
            action="tool",
            outcome=outcome,
            sandbox=turn.sandbox,
            argv=[tool.name, summary],
            rule=rule,
            detail=detail,
        )
    )
