"""The built-in tools, each run for real inside a sandbox (the policy and the guard are
the loop's business: tests/agent)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from hermitcrab.tools import builtin_tools
from hermitcrab.tools.schedule import ScheduleArgs

TOOLS = builtin_tools()


def call(run, context, name: str, **arguments):
    tool = TOOLS[name]
    return run(tool.run(tool.Args.model_validate(arguments), context))


def test_every_tool_is_declared_once_with_a_one_line_description_and_a_schema() -> None:
    assert sorted(TOOLS) == sorted(
        [
            "exec",
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "web_fetch",
            "send_message",
            "schedule",
            "memory_search",
            "memory_write",
        ]
    )
    for tool in TOOLS.values():
        spec = tool.spec()
        assert "\n" not in spec.description and len(spec.description) < 80
        assert spec.parameters["type"] == "object" and spec.parameters["additionalProperties"] is False
        assert "title" not in json.dumps(spec.parameters)  # tokens that say nothing
        assert tool.risk in ("read", "write", "exec", "network", "external")
    assert TOOLS["exec"].spec().parameters["properties"]["timeout"]["type"] == "number"  # not anyOf/null


def test_exec_runs_in_the_sandbox_and_reports_failures(run, context) -> None:
    ctx = context()
    done = call(run, ctx, "exec", command="id -u; pwd")
    assert not done.error and done.content == "1000\n/workspace\n"
    entry = ctx.runtime.audit.entries(sandbox="agent")[-1]
    assert (entry.actor, entry.argv) == ("agent:main", ["/bin/sh", "-c", "id -u; pwd"])
    failed = call(run, ctx, "exec", command="echo nope >&2; exit 4")
    assert failed.error and "nope" in failed.content and "[exit code 4]" in failed.content
    assert call(run, ctx, "exec", command="pwd", cwd="sub").error  # no such folder yet


def test_file_tools_stay_in_the_workspace(run, context) -> None:
    ctx = context()
    assert not call(run, ctx, "write_file", path="notes/todo.md", content="buy kelp\n").error
    assert call(run, ctx, "read_file", path="notes/todo.md").content == "buy kelp\n"
    assert (ctx.workspace / "notes" / "todo.md").read_text() == "buy kelp\n"
    assert call(run, ctx, "write_file", path="/usr/evil", content="x").error
    secret = call(run, ctx, "read_file", path="/etc/shadow")
    assert secret.error and "No such file" in secret.content
    assert call(run, ctx, "list_files").content == "notes/\nnotes/todo.md"


def test_edit_file_replaces_exactly_one_occurrence_or_says_why_not(run, context) -> None:
    ctx = context()
    call(run, ctx, "write_file", path="a.txt", content="crab crab kelp\n")
    twice = call(run, ctx, "edit_file", path="a.txt", old="crab", new="shrimp")
    assert twice.error and "occurs 2 times" in twice.content and "nothing was changed" in twice.content
    absent = call(run, ctx, "edit_file", path="a.txt", old="whale", new="x")
    assert absent.error and "was not found" in absent.content
    assert not call(run, ctx, "edit_file", path="a.txt", old="kelp", new="sea kelp").error
    assert (ctx.workspace / "a.txt").read_text() == "crab crab sea kelp\n"


def test_send_message_posts_to_the_session(run, context) -> None:
    sent: list[str] = []

    async def post(text: str) -> None:
        sent.append(text)

    assert call(run, context(post=post), "send_message", text="on my way").content == "sent"
    assert sent == ["on my way"]


def test_schedule_records_a_durable_job_marked_with_the_turns_taint(run, context, env) -> None:
    once = call(run, context(), "schedule", text="water the plants", at="2999-01-01T09:00")
    assert not once.error and "scheduled job 1" in once.content
    daily = call(run, context(taint=("https://evil.example",)), "schedule", text="report", cron="0 9 * * *")
    assert not daily.error
    jobs = env.store.jobs.all("main")
    assert [(j.text, j.cron, j.tainted) for j in jobs] == [
        ("water the plants", None, False),
        ("report", "0 9 * * *", True),
    ]
    assert call(run, context(), "schedule", text="x", at="2000-01-01T00:00").error  # the past
    for bad in ({"text": "x"}, {"text": "x", "cron": "every day"}, {"text": "x", "at": "tomorrow"}):
        with pytest.raises(ValidationError):
            ScheduleArgs.model_validate(bad)
