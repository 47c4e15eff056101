"""Discord through the real daemon and discord.py, against a loopback server speaking the
REST API and the gateway WebSocket: a stranger gets a pairing code; the owner talks and a
long answer comes in pieces of 2,000; a guild channel answers when the bot is mentioned; a
file lands in the workspace; a dropped connection is resumed and what came meanwhile is
replayed and answered; the API being down at the start is retried with backoff."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import Secret, SecretStore
from tests.channels.fake_discord import BOT_ID, BOT_NAME, TOKEN, FakeDiscord
from tests.channels.test_telegram import events, sessions
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

OWNER, GUEST, STRANGER = 111, 222, 333
LONG = "\n\n".join(f"Paragraph {n}: " + "word " * 60 for n in range(12))  # about 3,800 characters


def dm(person: int) -> int:
    return 5000 + person


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    server = FakeDiscord()
    running = server.serve()
    yield server
    running.should_exit = True


def start(home: Paths, fake: FakeDiscord, extra: str = "") -> Paths:
    replies = json.dumps(["Bonjour!", LONG, "Encore?"])
    channel = (
        f"\nchannels:\n  discord:\n    type: discord\n    api_url: {fake.api_url}\n"
        f"    gateway_url: {fake.gateway_url}\n{extra}"
    )
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies=replies) + channel)
    SecretStore(home.secrets).set(Secret("discord", TOKEN))
    assert hc(home, "up").returncode == 0
    return home


def channel(home: Paths) -> dict:
    return json.loads(hc(home, "channels", "list", "--json").stdout)["channels"][0]


@pytest.fixture
def bot(home: Paths, fake: FakeDiscord) -> Iterator[Paths]:
    start(home, fake)
    wait_for(lambda: channel(home)["state"] == "connected", what="the bot ready")
    yield home
    hc(home, "down")


def test_a_stranger_pairs_and_the_owner_talks_in_pieces_discord_takes(bot: Paths, fake: FakeDiscord) -> None:
    fake.say(STRANGER, "hello?")
    said = wait_for(lambda: [t for t in fake.to(dm(STRANGER)) if "pairing code" in t], what="a code")
    code = re.search(r"pairing code is ([A-Z0-9]{6})", said[0])
    assert code and sessions(bot) == {}
    assert hc(bot, "pairing", "approve", code.group(1), "--owner").returncode == 0
    wait_for(lambda: any("You are paired" in t for t in fake.to(dm(STRANGER))), what="the welcome")
    fake.say(STRANGER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(dm(STRANGER)), what="the reply")
    (message,) = [e for e in events(bot, "main") if e["kind"] == "message"]
    assert message["data"]["sender"] == "owner" and message["data"]["source"] == "discord"

    fake.say(STRANGER, "At length?")

    def long_one() -> list[str]:
        pieces = [t for t in fake.to(dm(STRANGER)) if t.startswith("Paragraph")]
        return pieces if " ".join(" ".join(pieces).split()) == " ".join(LONG.split()) else []

    pieces = wait_for(long_one, what="every piece of the long answer")
    assert len(pieces) > 1 and all(len(p) <= 2000 for p in pieces)
    assert channel(bot)["bot"] == BOT_NAME


def test_a_guild_channel_answers_when_the_bot_is_mentioned(bot: Paths, fake: FakeDiscord) -> None:
    fake.say(GUEST, "anyone?", guild_channel=700)
    fake.say(GUEST, f"<@{BOT_ID}> bonjour?", guild_channel=700)
    wait_for(lambda: "Bonjour!" in fake.to(700), what="the channel's reply")
    (message,) = [e for e in events(bot, "discord-group-700") if e["kind"] == "message"]
    assert message["data"]["approvals"] == "deny" and fake.to(dm(GUEST)) == []


def test_a_dropped_connection_is_resumed_and_loses_nothing(home: Paths, fake: FakeDiscord) -> None:
    fake.down_for = 2  # the API is down when the gateway starts: retried with backoff
    start(home, fake, f"    owners: ['{OWNER}']\n")
    try:
        wait_for(lambda: channel(home)["state"] == "connected", timeout=60, what="connected after the outage")
        assert fake.down_for == 0
        fake.say(OWNER, "Summarise this", file=("notes.txt", b"Revenue: 42\n"))
        wait_for(lambda: "Bonjour!" in fake.to(dm(OWNER)), what="the reply")
        (message,) = [e for e in events(home, "main") if e["kind"] == "message"]
        kept = re.search(
            r"\[file received: /workspace/(inbox/discord/\S+) \(12 bytes\)\]", message["data"]["text"]
        )
        assert kept and (home.workspace / kept.group(1)).read_bytes() == b"Revenue: 42\n"

        fake.drop()
        fake.say(OWNER, "while you were away")  # sent during the drop: replayed on RESUME
        wait_for(
            lambda: any(t.startswith("Paragraph") for t in fake.to(dm(OWNER))),
            timeout=60,
            what="the message from the drop answered",
        )
        assert fake.resumes == 1 and fake.identifies == 1
        texts = [e["data"]["text"] for e in events(home, "main") if e["kind"] == "message"]
        assert texts[-1] == "while you were away" and len(texts) == 2
        assert TOKEN not in (home.logs / "gateway.log").read_text()
    finally:
        hc(home, "down")
