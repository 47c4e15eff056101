"""The agent's exec and file tools: inside the sandbox, under the policy's tools section."""

from __future__ import annotations

from hermitcrab.tools.sandboxed import ExecTool, ReadFileTool, WriteFileTool, sandbox_tools


def test_exec_tool_runs_in_the_sandbox(runtime, run) -> None:
    run(runtime.create("agent"))
    result = run(ExecTool(runtime, "agent")({"command": "id -u; pwd"}, actor="agent:main"))
    assert result.ok and result.output == "1000\n/workspace\n"
    entry = runtime.audit.entries(sandbox="agent")[-1]
    assert (entry.actor, entry.argv) == ("agent:main", ["/bin/sh", "-c", "id -u; pwd"])


def test_exec_tool_reports_failures_and_kills(runtime, run) -> None:
    run(runtime.create("agent"))
    failed = run(ExecTool(runtime, "agent")({"command": "echo nope >&2; exit 4"}, actor="agent:main"))
    assert not failed.ok and "nope" in failed.output and "[exit code 4]" in failed.output


def test_file_tools_write_and_read_the_workspace_only(runtime, run) -> None:
    run(runtime.create("agent"))
    write = WriteFileTool(runtime, "agent")
    read = ReadFileTool(runtime, "agent")
    assert run(write({"path": "notes/todo.md", "content": "buy kelp\n"}, actor="agent:main")).ok
    assert run(read({"path": "notes/todo.md"}, actor="agent:main")).output == "buy kelp\n"
    assert (runtime.get("agent").box.spec.workspace / "notes" / "todo.md").read_text() == "buy kelp\n"
    outside = run(write({"path": "/usr/evil", "content": "x"}, actor="agent:main"))
    assert not outside.ok
    secret = run(read({"path": "/etc/shadow"}, actor="agent:main"))
    assert not secret.ok and "No such file" in secret.output


def test_policy_denies_and_asks_fail_closed(env, runtime, run) -> None:
    env.policy_file.write_text(
        env.policy_file.read_text()
        .replace("ask: []", "ask: [write_file]")
        .replace("deny: []", "deny: [exec]")
    )
    env.policy_file.write_text(
        env.policy_file.read_text().replace("allow: [exec, read_file, write_file]", "allow: []")
    )
    run(runtime.create("strict"))
    exec_tool, read_tool, write_tool = sandbox_tools(runtime, "strict")
    denied = run(exec_tool({"command": "id"}, actor="agent:main"))
    assert not denied.ok and "denies 'exec' (tools.deny: exec)" in denied.output
    asked = run(write_tool({"path": "f", "content": "x"}, actor="agent:main"))
    assert not asked.ok and "approval" in asked.output
    unlisted = run(read_tool({"path": "f"}, actor="agent:main"))
    assert not unlisted.ok and "not in tools.allow" in unlisted.output
    outcomes = [(e.outcome, e.rule) for e in runtime.audit.entries(sandbox="strict") if e.action == "exec"]
    assert outcomes == [
        ("denied", "tools.deny: exec"),
        ("denied", "tools.ask: write_file"),
        ("denied", "not in tools.allow: read_file"),
    ]
    assert not (runtime.get("strict").box.spec.workspace / "f").exists()
