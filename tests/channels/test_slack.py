"""Slack through the real daemon and Slack's own SDK, against a loopback server speaking the
Web API and Socket Mode: a stranger gets a pairing code; the owner talks and a long answer
is split where Slack takes it; an event is acknowledged once taken and a retry is taken
once; a channel answers when the bot is mentioned; a file lands in the workspace; a dropped
connection is opened again with backoff and loses nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import Secret, SecretStore
from tests.channels.fake_slack import APP_TOKEN, BOT_ID, BOT_NAME, BOT_TOKEN, FakeSlack
from tests.channels.test_telegram import events, sessions
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

OWNER, GUEST, STRANGER = "U111", "U222", "U333"
LONG = "\n\n".join(f"Paragraph {n}: " + "word " * 150 for n in range(12))  # about 9,000 characters


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    server = FakeSlack()
    running = server.serve()
    yield server
    running.should_exit = True


def start(home: Paths, fake: FakeSlack, extra: str = "") -> Paths:
    replies = json.dumps(["Bonjour!", LONG, "Encore?", "Toujours."])
    channel = f"\nchannels:\n  slack:\n    type: slack\n    api_url: {fake.api_url}\n{extra}"
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies=replies) + channel)
    store = SecretStore(home.secrets)
    store.set(Secret("slack", BOT_TOKEN))
    store.set(Secret("slack-app", APP_TOKEN))
    assert hc(home, "up").returncode == 0
    return home


@pytest.fixture
def bot(home: Paths, fake: FakeSlack) -> Iterator[Paths]:
    yield start(home, fake)
    hc(home, "down")


@pytest.fixture
def owned(home: Paths, fake: FakeSlack) -> Iterator[Paths]:
    yield start(home, fake, f"    owners: ['{OWNER}']\n")
    hc(home, "down")


def test_a_stranger_pairs_and_the_owner_talks_in_pieces_slack_takes(bot: Paths, fake: FakeSlack) -> None:
    fake.say(STRANGER, "hello?")
    said = wait_for(lambda: [t for t in fake.to(f"D{STRANGER}") if "pairing code" in t], what="a code")
    code = re.search(r"pairing code is ([A-Z0-9]{6})", said[0])
    assert code and sessions(bot) == {}
    assert hc(bot, "pairing", "approve", code.group(1), "--owner").returncode == 0
    wait_for(lambda: any("You are paired" in t for t in fake.to(f"D{STRANGER}")), what="the welcome")

    first = fake.say(STRANGER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(f"D{STRANGER}"), what="the reply")
    (message,) = [e for e in events(bot, "main") if e["kind"] == "message"]
    assert message["data"]["sender"] == "owner" and message["data"]["source"] == "slack"

    fake.say(STRANGER, "Bonjour?", ts=first)  # Slack's retry of the same event: taken once
    fake.say(STRANGER, "And at length?")

    def long_one() -> list[str]:
        pieces = [t for t in fake.to(f"D{STRANGER}") if t.startswith("Paragraph")]
        return pieces if " ".join(" ".join(pieces).split()) == " ".join(LONG.split()) else []

    pieces = wait_for(long_one, what="every piece of the long answer")
    assert len(pieces) > 1 and all(len(p) <= 4000 for p in pieces)
    assert len([e for e in events(bot, "main") if e["kind"] == "message"]) == 2
    wait_for(lambda: fake.envelopes == [], what="every event acknowledged")
    (channel,) = json.loads(hc(bot, "channels", "list", "--json").stdout)["channels"]
    assert channel["state"] == "connected" and channel["bot"] == BOT_NAME


def test_a_channel_is_answered_when_the_bot_is_mentioned(bot: Paths, fake: FakeSlack) -> None:
    fake.say(GUEST, "anyone?", channel="C500")
    fake.say(GUEST, f"<@{BOT_ID}> bonjour?", channel="C500")
    wait_for(lambda: "Bonjour!" in fake.to("C500"), what="the channel's reply")
    (message,) = [e for e in events(bot, "slack-group-C500") if e["kind"] == "message"]
    assert message["data"]["text"] == f"<@{BOT_ID}> bonjour?" and message["data"]["approvals"] == "deny"
    assert fake.to(f"D{GUEST}") == []  # nobody gets a code from a channel


def test_a_file_lands_in_the_workspace(owned: Paths, fake: FakeSlack) -> None:
    fake.say(OWNER, "Summarise this", files=[("notes.txt", b"Revenue: 42\n")])
    wait_for(lambda: "Bonjour!" in fake.to(f"D{OWNER}"), what="the reply")
    (message,) = [e for e in events(owned, "main") if e["kind"] == "message"]
    kept = re.search(r"\[file received: /workspace/(inbox/slack/\S+) \(12 bytes\)\]", message["data"]["text"])
    assert kept and (owned.workspace / kept.group(1)).read_bytes() == b"Revenue: 42\n"


def test_a_dropped_connection_is_opened_again_and_loses_nothing(owned: Paths, fake: FakeSlack) -> None:
    wait_for(lambda: fake.connections == 1, what="the first connection")
    fake.down_for = 2  # apps.connections.open fails twice: backoff of 1 s, then 2 s
    fake.drop()
    fake.say(OWNER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(f"D{OWNER}"), timeout=60, what="the reply after the outage")
    assert fake.connections == 2 and fake.down_for == 0
    (channel,) = json.loads(hc(owned, "channels", "list", "--json").stdout)["channels"]
    assert channel["state"] == "connected" and "internal_error" in (channel["error"] or "")
    log = (owned.logs / "gateway.log").read_text()
    assert BOT_TOKEN not in log and APP_TOKEN not in log
