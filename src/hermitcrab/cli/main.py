"""Command definitions only. Each command imports its implementation when it runs,
so that `hermitcrab --help` pays for nothing but Typer."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="HermitCrab: your always-on AI agent, with every tool in a sandbox.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: Rich's help renderer alone costs more than our whole start-up budget.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.command()
def onboard(
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept the defaults without asking."),
) -> None:
    """Create $HERMITCRAB_HOME: config, gateway token, workspace, policy. Keeps what exists."""
    from hermitcrab.cli.onboard import run

    run(yes)


@app.command()
def up(
    foreground: bool = typer.Option(False, "--foreground", help="Run in this terminal; Ctrl-C stops."),
) -> None:
    """Start the gateway daemon and wait until it is healthy."""
    from hermitcrab.cli.daemon import up as run

    run(foreground)


@app.command()
def down() -> None:
    """Stop the gateway daemon."""
    from hermitcrab.cli.daemon import down as run

    run()


@app.command()
def status(json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Is the gateway running, where, and on which model. Exit code 1 when it is not running."""
    from hermitcrab.cli.daemon import status as run

    run(json_output)


@app.command()
def logs(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many recent lines to show."),
    raw: bool = typer.Option(False, "--raw", help="Print the JSON lines as stored."),
) -> None:
    """Show the gateway's log."""
    from hermitcrab.cli.daemon import logs as run

    run(follow, lines, raw)


@app.command()
def ask(
    message: str = typer.Argument(..., help="What to ask."),
    session: str = typer.Option("cli", "--session", "-s", help="Session to continue."),
    agent: str | None = typer.Option(None, "--agent", help="Agent for a new session."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the reply."),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON object at the end, the turn's events with it."
    ),
    tool_choice: str | None = typer.Option(
        None, "--tool-choice", help="The first step must call this tool (or: auto, none, required)."
    ),
) -> None:
    """Run one turn through the gateway and print the reply on stdout (tool activity on
    stderr; exit code 1 on failure). A held tool call is asked y/N when stdin is a terminal,
    and denied at once when it is not."""
    from hermitcrab.cli.chat import ask as run

    run(message, session, agent, timeout, json_output, tool_choice)


@app.command()
def chat(
    session: str = typer.Option("chat", "--session", "-s", help="Session to continue."),
    agent: str | None = typer.Option(None, "--agent", help="Agent for a new session."),
    plain: bool = typer.Option(False, "--plain", help="A line prompt, for dumb terminals and pipes."),
) -> None:
    """Talk with the assistant in this terminal: replies streaming, tool calls, held requests
    to decide, sessions to switch (a line prompt with --plain, or when not on a terminal)."""
    from hermitcrab.cli.chat import chat as run

    run(session, agent, plain)


@app.command()
def dashboard() -> None:
    """Print the web dashboard's address, with the token in its fragment (never sent to the server)."""
    from hermitcrab.cli.daemon import dashboard_url

    print(dashboard_url())


@app.command()
def doctor(json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Check this machine and configuration; each failed check says how to fix it."""
    from hermitcrab.cli.doctor import run

    run(json_output)


sandbox_app = typer.Typer(help="Sandboxes: create, run commands in, inspect, snapshot, destroy.",
                          no_args_is_help=True, rich_markup_mode=None)  # fmt: skip
audit_app = typer.Typer(help="The audit log: show it, check its chain.", rich_markup_mode=None)
policy_app = typer.Typer(help="Check and show sandbox policies.", no_args_is_help=True, rich_markup_mode=None)
bench_app = typer.Typer(
    help="Measure HermitCrab on this machine.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
secrets_app = typer.Typer(help="Credentials the egress proxy injects; never seen by a sandbox.",
                          no_args_is_help=True, rich_markup_mode=None)  # fmt: skip
app.add_typer(bench_app, name="bench")
app.add_typer(secrets_app, name="secrets")
service_app = typer.Typer(help="Run the gateway under the service manager (systemd, launchd).",
                          no_args_is_help=True, rich_markup_mode=None)  # fmt: skip
app.add_typer(service_app, name="service")


@service_app.command("install")
def service_install(
    launchd: bool = typer.Option(
        False, "--launchd", help="Print the macOS launchd plist (the default on macOS)."
    ),
) -> None:
    """Write (and, where systemd runs, enable and start) a user unit that restarts on failure."""
    from hermitcrab.cli import service

    service.install(launchd)


@service_app.command("uninstall")
def service_uninstall() -> None:
    """Stop and remove the user unit."""
    from hermitcrab.cli import service

    service.uninstall()


cron_app = typer.Typer(help="Scheduled jobs: add, list, remove, run now, history.", no_args_is_help=True,
                       rich_markup_mode=None)  # fmt: skip
app.add_typer(cron_app, name="cron")


@cron_app.command("add")
def cron_add(
    text: str = typer.Argument(..., help="What the agent is told when the job runs."),
    cron: str | None = typer.Option(None, "--cron", help="A 5-field cron expression, e.g. '0 9 * * 1-5'."),
    every: str | None = typer.Option(None, "--every", help="An interval: 90s, 30m, 2h, 1d."),
    at: str | None = typer.Option(None, "--at", help="Once, at this ISO time (2026-12-01T09:00)."),
    tz: str | None = typer.Option(None, "--tz", help="The IANA time zone for --cron and --at."),
    agent: str | None = typer.Option(None, "--agent", help="The agent it talks to (default: the default)."),
    catch_up: str = typer.Option(
        "once", "--catch-up", help="After downtime: once (one run for all missed), skip, or all."
    ),
    name: str | None = typer.Option(None, "--name", help="A name to know it by."),
    model: str | None = typer.Option(None, "--model", help="A model route of its own (a cheaper one)."),
    json_output: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Schedule a message to the agent: on a cron expression, every N, or once."""
    from hermitcrab.cli import cron as run

    run.add(text, cron, every, at, tz, agent, catch_up, name, model, json_output)


@cron_app.command("list")
def cron_list(
    all_: bool = typer.Option(False, "--all", help="Also removed and finished jobs."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The scheduled jobs and when each runs next."""
    from hermitcrab.cli import cron as run

    run.list_jobs(all_, json_output)


@cron_app.command("remove")
def cron_remove(job_id: int = typer.Argument(..., help="From `hermitcrab cron list`.")) -> None:
    """Stop a job; its history stays."""
    from hermitcrab.cli import cron as run

    run.remove(job_id)


@cron_app.command("run-now")
def cron_run_now(
    job_id: int = typer.Argument(..., help="From `hermitcrab cron list`."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run a job once, now, outside its schedule."""
    from hermitcrab.cli import cron as run

    run.run_now(job_id, json_output)


@cron_app.command("history")
def cron_history(
    job_id: int | None = typer.Argument(None, help="One job's runs (default: every job's)."),
    limit: int = typer.Option(50, "--limit", help="How many runs, newest first."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What ran when, how late, and what it stood for."""
    from hermitcrab.cli import cron as run

    run.history(job_id, limit, json_output)


@secrets_app.command("set")
def secrets_set(
    name: str,
    header: str = typer.Option("Authorization", "--header", help="The header the proxy sets."),
    scheme: str = typer.Option("Bearer", "--scheme", help="Written before the value; '' for none."),
) -> None:
    """Store a credential (read from stdin, or asked for without echo)."""
    from hermitcrab.cli import secrets

    secrets.set_secret(name, header, scheme)


@secrets_app.command("list")
def secrets_list() -> None:
    """List the names of stored credentials (never their values)."""
    from hermitcrab.cli import secrets

    secrets.list_secrets()


@secrets_app.command("rm")
def secrets_rm(name: str) -> None:
    """Forget a credential."""
    from hermitcrab.cli import secrets

    secrets.remove(name)


@sandbox_app.command("create")
def sandbox_create(
    name: str = typer.Argument(..., help="Lower-case letters, digits, '-' and '_'."),
    policy: str | None = typer.Option(
        None, "--policy", help="Policy file (default: $HERMITCRAB_HOME/policy.yaml)."
    ),
    workspace: str | None = typer.Option(None, "--workspace", help="Host folder to use as /workspace."),
    agent: str | None = typer.Option(
        None,
        "--agent",
        help="The agent it works for: inference.local takes this agent's model route "
        "(default: the agent named like the sandbox, else the default agent).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Create a sandbox and start its supervisor."""
    from hermitcrab.cli import sandbox

    sandbox.create(name, policy, workspace, agent, json_output)


@sandbox_app.command("list")
def sandbox_list(json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """List the sandboxes."""
    from hermitcrab.cli import sandbox

    sandbox.list_all(json_output)


@sandbox_app.command("status")
def sandbox_status(
    name: str, json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")
) -> None:
    """Show one sandbox: running, processes, policy version, Landlock."""
    from hermitcrab.cli import sandbox

    sandbox.status(name, json_output)


@sandbox_app.command("exec")
def sandbox_exec(
    name: str = typer.Argument(...),
    command: list[str] = typer.Argument(..., help="The command and its arguments, after --."),
    cwd: str | None = typer.Option(None, "--cwd", help="Working folder inside the sandbox."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds (at most the policy's)."),
) -> None:
    """Run a command in a sandbox; exit with its exit code."""
    from hermitcrab.cli import sandbox

    sandbox.exec_command(name, command, cwd, timeout)


@sandbox_app.command("destroy")
def sandbox_destroy(name: str) -> None:
    """Kill everything in a sandbox and forget it (its workspace folder stays)."""
    from hermitcrab.cli import sandbox

    sandbox.destroy(name)


@sandbox_app.command("snapshot")
def sandbox_snapshot(name: str, file: str = typer.Argument(..., help="Archive to write (.tar.gz).")) -> None:
    """Archive a sandbox's workspace, policy and metadata, with checksums."""
    from hermitcrab.cli import sandbox

    sandbox.snapshot(name, file)


@sandbox_app.command("restore")
def sandbox_restore(
    file: str,
    name: str,
    archive_policy: bool = typer.Option(
        False, "--archive-policy", help="Use the policy packed in the archive, not the current file."
    ),
) -> None:
    """Create sandbox NAME from a snapshot archive, after verifying its checksums, under the
    current policy file (the archive's policy is shown when it differs)."""
    from hermitcrab.cli import sandbox

    sandbox.restore(file, name, archive_policy)


@audit_app.callback(invoke_without_command=True)
def audit(
    ctx: typer.Context,
    sandbox: str | None = typer.Option(None, "--sandbox", help="Only this sandbox."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many recent entries."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show the audit log: every exec and sandbox change, who asked, and what happened."""
    if ctx.invoked_subcommand is not None:
        return
    from hermitcrab.cli import sandbox as cli_sandbox

    cli_sandbox.audit(sandbox, limit, json_output)


@audit_app.command("verify")
def audit_verify(json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Check the audit log's hash chain; name the first entry that does not hold."""
    from hermitcrab.cli import sandbox as cli_sandbox

    cli_sandbox.audit_verify(json_output)


@policy_app.command("check")
def policy_check(file: str) -> None:
    """Validate a policy file; errors name the line, the key and the fix."""
    from hermitcrab.cli import policy

    policy.check(file)


@policy_app.command("show")
def policy_show(
    file: str | None = typer.Argument(None, help="Default: $HERMITCRAB_HOME/policy.yaml."),
) -> None:
    """Print the effective policy: the file with every default filled in."""
    from hermitcrab.cli import policy

    policy.show(file)


@policy_app.command("set")
def policy_set(file: str) -> None:
    """Validate FILE and make it the policy; network rules apply to new connections at once."""
    from hermitcrab.cli import policy

    policy.set_policy(file)


@app.command()
def usage(
    by: str = typer.Option("day", "--by", help="day, agent, session or model."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Model calls, tokens, latency and cost, summed; and today's spend against the caps."""
    from hermitcrab.cli.usage import show

    show(by, json_output)


@app.command()
def approvals(
    all_: bool = typer.Option(False, "--all", help="Decided ones too."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List network requests held for a person to approve."""
    from hermitcrab.cli import approvals as run

    run.list_approvals(all_, json_output)


@app.command()
def approve(
    approval_id: str = typer.Argument(..., help="From `hermitcrab approvals`."),
    always: bool = typer.Option(False, "--always", help="Also write a rule that allows it from now on."),
) -> None:
    """Let a held request through (and, with --always, every one like it)."""
    from hermitcrab.cli import approvals as run

    run.decide(approval_id, True, always)


@app.command()
def deny(approval_id: str = typer.Argument(..., help="From `hermitcrab approvals`.")) -> None:
    """Refuse a held request."""
    from hermitcrab.cli import approvals as run

    run.decide(approval_id, False, False)


@bench_app.command("sandbox")
def bench_sandbox(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
    runs: int = typer.Option(200, "--runs", help="Execs to time (creates: runs / 10)."),
) -> None:
    """Sandbox create, destroy and exec times against a bare subprocess, in one run."""
    from hermitcrab.cli import bench

    bench.sandbox(json_output, runs)


@bench_app.command("egress")
def bench_egress(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
    requests: int = typer.Option(300, "--requests", help="HTTPS GETs to time each way."),
) -> None:
    """The egress door's cost: added latency, throughput, policy reload time, in one run."""
    from hermitcrab.cli import bench_egress as run

    run.egress(json_output, requests)


@bench_app.command("chaos")
def bench_chaos(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
    kills: int = typer.Option(20, "--kills", help="How many times the daemon is killed with SIGKILL."),
) -> None:
    """kill -9 the daemon at random moments under load; count lost and doubled work."""
    from hermitcrab.cli import bench_chaos as run

    run.chaos(json_output, kills)


@bench_app.command("soak")
def bench_soak(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
    rounds: int = typer.Option(20, "--rounds", help="Bursts of 1,000 text turns (50 sessions x 20)."),
) -> None:
    """The daemon under steady load: turns/s, gateway overhead, RSS slope, fds, threads."""
    from hermitcrab.cli import bench_soak as run

    run.soak(json_output, rounds)


@bench_app.command("memory")
def bench_memory(json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """The memory index with 10,000 notes: search p50, re-reading one file, recall@5."""
    from hermitcrab.cli import bench_memory as run

    run.bench(json_output)


@bench_app.command("prompt")
def bench_prompt(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Tokens of a fresh agent's first model request: system prompt, message, every tool."""
    from hermitcrab.cli import bench_prompt as run

    run.prompt(json_output)


def main() -> None:
    import sys

    from hermitcrab.errors import HermitCrabError

    try:
        app()
    except HermitCrabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()


mcp_app = typer.Typer(help="MCP: the servers the agents use; probe one as a client.", no_args_is_help=True,
                      rich_markup_mode=None)  # fmt: skip
app.add_typer(mcp_app, name="mcp")


@mcp_app.command("list")
def mcp_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The MCP servers each agent runs: their state and their tools."""
    from hermitcrab.cli import mcp as run

    run.list_servers(json_output)


@mcp_app.command("serve")
def mcp_serve() -> None:
    """Serve the agent to an MCP client over stdio (relayed to the gateway's /mcp)."""
    from hermitcrab.cli import mcp as run

    run.serve()


@mcp_app.command("login")
def mcp_login(
    name: str = typer.Argument(..., help="The server's name under mcp.servers."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the sign-in page in a browser."),
    timeout: float = typer.Option(300.0, "--timeout", help="How long to wait for the sign-in, in seconds."),
) -> None:
    """Sign in to an MCP server by OAuth; its tokens go to the secrets store, never a sandbox."""
    from hermitcrab.cli import mcp as run

    run.login(name, browser, timeout)


@mcp_app.command("logout")
def mcp_logout(name: str = typer.Argument(..., help="The server's name under mcp.servers.")) -> None:
    """Forget the sign-in to an MCP server."""
    from hermitcrab.cli import mcp as run

    run.logout(name)


@mcp_app.command("probe")
def mcp_probe(
    url: str = typer.Option(
        ..., "--url", help="The server's streamable HTTP endpoint, e.g. http://127.0.0.1:3000/mcp."
    ),
    call: str = typer.Option(
        "read-only", "--call", help="Which tools to call: read-only (those the server marks so), all, none."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Give up after this many seconds."),
    client_metadata_url: str | None = typer.Option(
        None,
        "--client-metadata-url",
        help="OAuth: an https URL serving this client's metadata document, used as its client id "
        "where the server takes those (else the client registers itself).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Connect to an MCP server from this machine, list its tools and call them."""
    from hermitcrab.cli import mcp as run

    run.probe(url, call, timeout, json_output, client_metadata_url)


channels_app = typer.Typer(help="Chat channels: their state.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(channels_app, name="channels")


@channels_app.command("list")
def channels_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each channel: connected or not, and its last error."""
    from hermitcrab.cli import channels as run

    run.channels(json_output)


@channels_app.command("status")
def channels_status(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The same as `channels list`."""
    from hermitcrab.cli import channels as run

    run.channels(json_output)


pairing_app = typer.Typer(
    help="Who may talk to the agent on a chat channel.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(pairing_app, name="pairing")


@pairing_app.command("list")
def pairing_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Pairing codes waiting, and who is paired."""
    from hermitcrab.cli import channels as run

    run.pairing(json_output)


@pairing_app.command("approve")
def pairing_approve(
    code: str = typer.Argument(..., help="The code the sender was given."),
    owner: bool = typer.Option(False, "--owner", help="It is you: your messages act with your authority."),
) -> None:
    """Let a sender talk to the agent (as a guest, or as the owner with --owner)."""
    from hermitcrab.cli import channels as run

    run.approve(code, owner)


@pairing_app.command("revoke")
def pairing_revoke(
    channel: str = typer.Argument(..., help="The channel's name."),
    sender: str = typer.Argument(..., help="The sender's id on it (`pairing list`)."),
) -> None:
    """Stop answering a paired sender."""
    from hermitcrab.cli import channels as run

    run.revoke(channel, sender)


skills_app = typer.Typer(help="Skills: list what each agent is offered, install one.", no_args_is_help=True,
                         rich_markup_mode=None)  # fmt: skip
app.add_typer(skills_app, name="skills")


@skills_app.command("list")
def skills_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each agent's skills: where each comes from, and why a hidden one is hidden."""
    from hermitcrab.cli import skills as run

    run.list_skills(json_output)


@skills_app.command("install")
def skills_install(
    source: str = typer.Argument(
        ..., help="A skill's folder, a .zip or .tar.gz of one, a SKILL.md, or a URL."
    ),
    sha256: str | None = typer.Option(None, "--sha256", help="Refuse it unless its SHA-256 is this."),
    yes: bool = typer.Option(False, "--yes", help="Install even if it has content flagged as risky."),
    force: bool = typer.Option(False, "--force", help="Replace an installed skill of the same name."),
) -> None:
    """Install a skill for every agent, pinned by its SHA-256."""
    from hermitcrab.cli import skills as run

    run.install(source, sha256, yes, force)


cluster_app = typer.Typer(help="A Ray cluster for the agents: start or join, show, stop.",
                          no_args_is_help=True, rich_markup_mode=None)  # fmt: skip
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("up")
def cluster_up(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Start a Ray head here (cluster.port), or join the cluster at cluster.address."""
    from hermitcrab.cli import cluster_cmd

    cluster_cmd.up(json_output)


@cluster_app.command("status")
def cluster_status(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The nodes, whether each can host an agent's sandboxes (and why not), and the agents."""
    from hermitcrab.cli import cluster_cmd

    cluster_cmd.status(json_output)


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop this machine's Ray processes."""
    from hermitcrab.cli import cluster_cmd

    cluster_cmd.down()


store_app = typer.Typer(help="The store: copy it to PostgreSQL.", no_args_is_help=True,
                        rich_markup_mode=None)  # fmt: skip
app.add_typer(store_app, name="store")


@store_app.command("migrate")
def store_migrate(
    to: str = typer.Option(..., "--to", help="postgresql://USER@HOST:PORT/DATABASE (an empty database)."),
    password_secret: str | None = typer.Option(
        None, "--password-secret", help="The secret holding the password (`hermitcrab secrets set NAME`)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Copy the embedded store to PostgreSQL, every table, and check the counts."""
    from hermitcrab.cli import store_cmd

    store_cmd.migrate(to, password_secret, json_output)


agent_app = typer.Typer(help="Agents: carry one to another home as a file.", no_args_is_help=True,
                        rich_markup_mode=None)  # fmt: skip
app.add_typer(agent_app, name="agent")


@agent_app.command("export")
def agent_export(
    file: str = typer.Argument(..., help="Where the snapshot goes (a .tar.gz)."),
    agent: str | None = typer.Option(None, "--agent", help="Which agent (default: the default agent)."),
    force: bool = typer.Option(False, "--force", help="Replace the file if it exists."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write an agent (sessions, jobs, memory, workspace, its config) to one file."""
    from hermitcrab.cli import agent_files

    agent_files.export(agent, file, force, json_output)


@agent_app.command("import")
def agent_import(
    file: str = typer.Argument(..., help="A snapshot `hermitcrab agent export` wrote."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Restore an agent from a snapshot into this home (checked whole before anything changes)."""
    from hermitcrab.cli import agent_files

    agent_files.restore(file, json_output)


memory_app = typer.Typer(help="Long-term memory: search it, rebuild its index.", no_args_is_help=True,
                         rich_markup_mode=None)  # fmt: skip
app.add_typer(memory_app, name="memory")


@memory_app.command("search")
def memory_search(
    query: str = typer.Argument(..., help="What to recall, in plain words."),
    agent: str | None = typer.Option(None, "--agent", help="Whose memory (default: the default agent)."),
    limit: int = typer.Option(5, "--limit", help="How many lines."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search MEMORY.md and the daily notes; each line with its file:line."""
    from hermitcrab.cli import memory as run

    run.search(query, agent, limit, json_output)


@memory_app.command("reindex")
def memory_reindex(
    agent: str | None = typer.Option(None, "--agent", help="Whose memory (default: the default agent)."),
) -> None:
    """Rebuild the memory index from the files (searches keep it current on their own)."""
    from hermitcrab.cli import memory as run

    run.reindex(agent)
