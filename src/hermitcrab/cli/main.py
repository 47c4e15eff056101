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
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
) -> None:
    """Run one turn through the gateway and print the reply (exit code 1 on failure)."""
    from hermitcrab.cli.chat import ask as run

    run(message, session, agent, timeout, json_output)


@app.command()
def chat(
    session: str = typer.Option("chat", "--session", "-s", help="Session to continue."),
    agent: str | None = typer.Option(None, "--agent", help="Agent for a new session."),
) -> None:
    """Talk with the assistant in this terminal, replies streaming as they are written."""
    from hermitcrab.cli.chat import chat as run

    run(session, agent)


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


def main() -> None:
    from hermitcrab.errors import HermitCrabError

    try:
        app()
    except HermitCrabError as exc:
        import sys

        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
