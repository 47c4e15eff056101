"""`ask` and `chat`: send a message through the gateway and stream the reply as it comes."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from hermitcrab.cli.client import GatewayClient
from hermitcrab.cli.output import fail, print_json, shown
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError

ANSWER_KINDS = frozenset({"reply", "turn.failed"})


class Activity:
    """What a turn does besides its reply, shown on stderr (stdout carries the reply alone),
    and a held call asked inline when a person is at the terminal."""

    def __init__(self, client: GatewayClient, interactive: bool, quiet: bool) -> None:
        self.client = client
        self.interactive = interactive
        self.quiet = quiet
        self.events: list[dict[str, Any]] = []

    def show(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        data, kind = event["data"], event["kind"]
        if kind == "tool.call":
            self._say(f"· {data['name']} {_short(data['arguments'])}")
        elif kind == "tool.result" and data.get("error"):
            self._say(f"  ✗ {_short(data['content'])}")
        elif kind == "agent.message":
            self._say(f"[message] {data['text']}")
        elif kind == "approval.asked":
            self._ask(data)
        elif kind == "approval.decided" and data.get("state") != "approved":
            self._say(f"  held call {data['state']}: {data.get('reason') or 'a person said no'}")
            if not self.interactive:
                self._say(
                    "  to allow it: run this in a terminal and answer y, or add the tool to tools.allow "
                    "in policy.yaml (a turn that read untrusted content asks whatever the policy says)"
                )

    def _ask(self, data: dict[str, Any]) -> None:
        lines = [
            f"? held for your approval: {shown(data['summary'], one_line=True)}",
            f"  why: {shown(data['why'])}",
        ]
        if data.get("details"):
            lines.append("  " + shown(data["details"]).replace("\n", "\n  | ").join(["| ", ""]))
        self._say("\n".join(lines), force=True)
        if not self.interactive:
            return
        sys.stderr.write("  allow? [y]es once / [a]lways / [N]o: ")
        sys.stderr.flush()
        try:
            answer = input().strip().lower()
        except EOFError:
            answer = ""
        decision = "approve" if answer in ("y", "yes", "a", "always") else "deny"
        body = {"decision": decision, "always": answer in ("a", "always"), "actor": "cli"}
        try:
            self.client.request("POST", f"/api/approvals/{data['approval_id']}", json=body)
        except GatewayError as exc:
            self._say(f"  could not decide: {exc}", force=True)

    def _say(self, text: str, force: bool = False) -> None:
        if not self.quiet or force:
            print(shown(text), file=sys.stderr, flush=True)


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(shown(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _turn(
    client: GatewayClient,
    session: str,
    text: str,
    agent: str | None,
    timeout: float,
    echo: bool,
    activity: Activity | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Send one message and wait for its answer event, writing tokens as they stream
    (when `echo`) and tool activity to `activity`."""
    # Listen before sending, so that no token of the reply can be missed.
    ws = client.websocket(session)
    try:
        accepted = client.post_message(session, text, agent, **options)
        message_id = accepted["message_id"]
        deadline = time.monotonic() + timeout
        started = False
        while time.monotonic() < deadline:
            try:
                raw = ws.recv(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
            except TimeoutError:
                continue
            except Exception:  # the stream broke (gateway restarting): ask the log instead
                return _poll_answer(client, session, message_id, deadline)
            event = json.loads(raw)
            if event.get("reply_to") != message_id:
                continue
            if event["kind"] == "token" and echo:
                chunk = event["data"]["text"]
                if not started:
                    chunk, started = chunk.lstrip(), True
                sys.stdout.write(shown(chunk))
                sys.stdout.flush()
            elif event["kind"] in ANSWER_KINDS:
                if echo and started:
                    sys.stdout.write("\n")
                event["streamed"] = started
                return event
            elif event["kind"] == "model.response" and echo and started:
                sys.stdout.write("\n")  # a step's text, before its tool calls
                started = False
            elif activity is not None and event["kind"] != "token":
                activity.show(event)
        raise GatewayError(
            f"no reply within {timeout:g} s (message {message_id} stays queued in '{session}')"
        )
    finally:
        ws.close()


def _poll_answer(client: GatewayClient, session: str, message_id: int, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        try:
            for event in client.events(session, after=message_id):
                if event["kind"] in ANSWER_KINDS and event.get("reply_to") == message_id:
                    event["streamed"] = False
                    return event
        except GatewayError:
            pass  # still restarting
        time.sleep(0.5)
    raise GatewayError(f"no reply to message {message_id} in time")


def ask(
    message: str, session: str, agent: str | None, timeout: float, json_output: bool, tool_choice: str | None
) -> None:
    """One turn. stdout gets the reply alone (streamed when it is a terminal); tool activity
    goes to stderr. A held call is asked y/N inline when stdin is a terminal; otherwise no
    person is present, and the gateway denies it at once."""
    client = GatewayClient(Paths.from_env())
    interactive = sys.stdin.isatty()
    activity = Activity(client, interactive, quiet=json_output)
    options: dict[str, Any] = {"approvals": "ask" if interactive else "deny"}
    if tool_choice:
        options["tool_choice"] = tool_choice
    echo = not json_output and sys.stdout.isatty()
    answer = _turn(client, session, message, agent, timeout, echo, activity, **options)
    if json_output:
        print_json(
            {
                "session_id": session,
                "message_id": answer["reply_to"],
                "ok": answer["kind"] == "reply",
                "reply": answer["data"].get("text"),
                "error": answer["data"].get("error"),
                "usage": answer["data"].get("usage"),
                "duration_ms": answer["data"].get("duration_ms"),
                "events": activity.events,
            }
        )
        if answer["kind"] != "reply":
            raise SystemExit(1)
        return
    if answer["kind"] != "reply":
        fail(answer["data"].get("error", "the turn failed"))
    text = answer["data"].get("text", "")
    if not answer["streamed"]:
        print(shown(text))
    if not text:
        fail("the model returned an empty reply")


def chat(session: str, agent: str | None, plain: bool = False) -> None:
    client = GatewayClient(Paths.from_env())
    if client.health() is None:
        fail(f"the gateway at {client.base_url} is not running. fix: `hermitcrab up`")
    terminal = sys.stdin.isatty() and sys.stdout.isatty() and os.environ.get("TERM") not in (None, "", "dumb")
    if not plain and terminal:
        from hermitcrab.cli.tui import run

        run(client, session, agent)
        return
    print(f"HermitCrab chat, session '{session}'. Type /exit or press Ctrl-D to leave.")
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        sys.stdout.write("crab> ")
        sys.stdout.flush()
        try:
            answer = _turn(client, session, text, agent, 600.0, True, Activity(client, True, quiet=False))
        except GatewayError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            continue
        except KeyboardInterrupt:
            print("\n(stopped waiting; the reply will still be saved in the session)")
            continue
        if answer["kind"] != "reply":
            print(f"\nerror: {shown(answer['data'].get('error'))}", file=sys.stderr)
        elif not answer["streamed"]:
            print(shown(answer["data"].get("text", "")))
