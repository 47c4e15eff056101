"""`ask` and `chat`: send a message through the gateway and stream the reply as it comes."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from hermitcrab.cli.client import GatewayClient
from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError

ANSWER_KINDS = frozenset({"reply", "turn.failed"})


def _turn(
    client: GatewayClient, session: str, text: str, agent: str | None, timeout: float, echo: bool
) -> dict[str, Any]:
    """Send one message and wait for its answer event, writing tokens as they stream."""
    # Listen before sending, so that no token of the reply can be missed.
    ws = client.websocket(session)
    try:
        accepted = client.post_message(session, text, agent)
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
                sys.stdout.write(chunk)
                sys.stdout.flush()
            elif event["kind"] in ANSWER_KINDS:
                if echo and started:
                    sys.stdout.write("\n")
                event["streamed"] = started
                return event
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


def ask(message: str, session: str, agent: str | None, timeout: float, json_output: bool) -> None:
    client = GatewayClient(Paths.from_env())
    answer = _turn(client, session, message, agent, timeout, echo=not json_output)
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
            }
        )
        if answer["kind"] != "reply":
            raise SystemExit(1)
        return
    if answer["kind"] != "reply":
        fail(answer["data"].get("error", "the turn failed"))
    text = answer["data"].get("text", "")
    if not answer["streamed"]:
        print(text)
    if not text:
        fail("the model returned an empty reply")


def chat(session: str, agent: str | None) -> None:
    client = GatewayClient(Paths.from_env())
    if client.health() is None:
        fail(f"the gateway at {client.base_url} is not running. fix: `hermitcrab up`")
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
            answer = _turn(client, session, text, agent, 600.0, echo=True)
        except GatewayError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            continue
        except KeyboardInterrupt:
            print("\n(stopped waiting; the reply will still be saved in the session)")
            continue
        if answer["kind"] != "reply":
            print(f"\nerror: {answer['data'].get('error')}", file=sys.stderr)
        elif not answer["streamed"]:
            print(answer["data"].get("text", ""))
