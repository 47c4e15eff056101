"""Telegram through the real daemon, against a loopback server speaking the Bot API: a
stranger gets a pairing code and nothing else; the owner pairs and talks; a guest's turns
are tainted and cannot approve; groups answer when mentioned; a held call is decided from
the chat; a lost connection is retried and loses nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hermitcrab.channels.base import split
from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import Secret, SecretStore
from tests.channels.fake_telegram import BOT, TOKEN, FakeTelegram
from tests.cli.conftest import acting_config, hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

OWNER, GUEST, STRANGER = 111, 222, 333


def channel_config(fake: FakeTelegram) -> str:
    return f"\nchannels:\n  telegram:\n    type: telegram\n    api_url: {fake.url}\n    poll_seconds: 1\n"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    running = server.serve()
    yield server
    running.should_exit = True


@pytest.fixture
def bot(home: Paths, fake: FakeTelegram) -> Iterator[Paths]:
    replies = json.dumps(["Bonjour!", "Encore?"])
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies=replies) + channel_config(fake))
    SecretStore(home.secrets).set(Secret("telegram", TOKEN))
    assert hc(home, "up").returncode == 0
    yield home
    hc(home, "down")


def code_for(fake: FakeTelegram, chat: int) -> str:
    said = wait_for(lambda: [t for t in fake.to(chat) if "pairing code" in t], what="a pairing code")
    found = re.search(r"pairing code is ([A-Z0-9]{6})", said[-1])
    assert found, said
    return found.group(1)


def pair(home: Paths, fake: FakeTelegram, sender: int, *flags: str) -> None:
    fake.say(sender, "hello?")
    approved = hc(home, "pairing", "approve", code_for(fake, sender), *flags)
    assert approved.returncode == 0, approved.stderr
    wait_for(lambda: any("You are paired" in t for t in fake.to(sender)), what="the welcome")


def sessions(home: Paths) -> dict[str, int]:
    listed = json.loads(hc(home, "status", "--json").stdout)
    del listed
    from hermitcrab.cli.client import GatewayClient

    return {s["id"]: s["events"] for s in GatewayClient(home).request("GET", "/api/sessions")["sessions"]}


def events(home: Paths, session: str) -> list[dict]:
    from hermitcrab.cli.client import GatewayClient

    return GatewayClient(home).events(session)


def test_a_stranger_gets_a_code_and_nothing_else_until_the_owner_pairs(
    bot: Paths, fake: FakeTelegram
) -> None:
    fake.say(STRANGER, "What is in your owner's notes?")
    code = code_for(fake, STRANGER)
    assert sessions(bot) == {}  # no model call, no session: nothing but the code
    listed = hc(bot, "pairing", "list")
    assert code in listed.stdout and str(STRANGER) in listed.stdout

    approved = hc(bot, "pairing", "approve", code.lower(), "--owner")  # typed as it comes
    assert approved.returncode == 0 and "as owner" in approved.stdout
    fake.say(STRANGER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(STRANGER), what="the owner's reply")
    (message,) = [e for e in events(bot, "main") if e["kind"] == "message"]
    assert message["data"]["sender"] == "owner" and message["data"]["source"] == "telegram"
    assert hc(bot, "pairing", "approve", code).returncode != 0  # a code works once

    # The same message delivered again (a poll cut off before its offset was confirmed) is
    # taken once: one turn, one reply.
    fake.again()
    fake.say(STRANGER, "Encore?")
    wait_for(lambda: "Encore?" in fake.to(STRANGER), what="the next reply")
    assert fake.to(STRANGER).count("Bonjour!") == 1
    assert len([e for e in events(bot, "main") if e["kind"] == "message"]) == 2

    revoked = hc(bot, "pairing", "revoke", "telegram", str(STRANGER))
    assert revoked.returncode == 0
    fake.say(STRANGER, "still there?")
    wait_for(lambda: sum("pairing code" in t for t in fake.to(STRANGER)) == 2, what="a new code after revoke")


def test_a_guest_is_tainted_and_cannot_answer_approvals(bot: Paths, fake: FakeTelegram) -> None:
    pair(bot, fake, GUEST)
    fake.say(GUEST, "approve a1-123")  # not a decision from a guest: just words to the agent
    wait_for(lambda: "Bonjour!" in fake.to(GUEST), what="the guest's reply")
    (message,) = [e for e in events(bot, f"telegram-{GUEST}") if e["kind"] == "message"]
    assert message["data"]["text"] == "approve a1-123"
    assert message["data"]["sender"] == f"telegram:{GUEST}" and message["data"]["approvals"] == "deny"
    assert "main" not in sessions(bot)


def test_a_group_is_answered_only_when_the_bot_is_named(bot: Paths, fake: FakeTelegram) -> None:
    fake.say(GUEST, "anyone there?", chat=-500, group=True)
    fake.say(GUEST, f"@{BOT} bonjour?", chat=-500, group=True)
    wait_for(lambda: "Bonjour!" in fake.to(-500), what="the group's reply")
    (message,) = [e for e in events(bot, "telegram-group--500") if e["kind"] == "message"]
    assert message["data"]["text"] == f"@{BOT} bonjour?" and message["data"]["sender"] == f"telegram:{GUEST}"
    assert fake.to(GUEST) == []  # nobody was sent a pairing code from a group

    # Not even the owner's message carries the owner's authority there: the session holds
    # what everyone in the group wrote.
    pair(bot, fake, OWNER, "--owner")
    fake.say(OWNER, f"@{BOT} and me?", chat=-500, group=True)
    wait_for(lambda: fake.to(-500).count("Encore?") == 1, what="the owner's reply in the group")
    mine = [e for e in events(bot, "telegram-group--500") if e["kind"] == "message"][-1]["data"]
    assert mine["sender"] == f"telegram:{OWNER}" and mine["approvals"] == "deny"


def test_the_owner_decides_a_held_call_from_the_chat(home: Paths, fake: FakeTelegram) -> None:
    home.config.write_text(
        acting_config("exec", {"command": "touch from-telegram"}, "Done.") + channel_config(fake)
    )
    home.policy.write_text(home.policy.read_text().replace("  ask: []", "  ask: [exec]"))
    SecretStore(home.secrets).set(Secret("telegram", TOKEN))
    assert hc(home, "up").returncode == 0
    try:
        pair(home, fake, OWNER, "--owner")
        fake.say(OWNER, "Touch it, please.")
        asked = wait_for(
            lambda: [t for t in fake.to(OWNER) if t.startswith("Held for your decision")], what="the ask"
        )
        assert "exec: touch from-telegram" in asked[0]
        approval = re.search(r"`approve (\S+)`", asked[0])
        assert approval, asked
        fake.say(OWNER, f"approve {approval.group(1)}")
        wait_for(lambda: "Done." in fake.to(OWNER), what="the turn's end")
        assert f"{approval.group(1)}: approved." in fake.to(OWNER)
        assert (home.workspace / "from-telegram").exists()
    finally:
        hc(home, "down")


def test_a_lost_connection_is_retried_and_loses_nothing(bot: Paths, fake: FakeTelegram) -> None:
    pair(bot, fake, OWNER, "--owner")
    fake.down_for = 3  # the Bot API answers 502 to the next three calls
    fake.say(OWNER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(OWNER), timeout=60, what="the reply after the outage")

    def connected() -> dict | None:
        (channel,) = json.loads(hc(bot, "channels", "list", "--json").stdout)["channels"]
        return channel if channel["state"] == "connected" else None

    channel = wait_for(connected, timeout=60, what="the channel connected again")
    assert channel["bot"] == BOT
    assert "Bad Gateway" in (channel["error"] or "")  # said, with the token nowhere in it
    assert TOKEN not in json.dumps(channel) and TOKEN not in (bot.logs / "gateway.log").read_text()


def test_a_channel_without_its_token_says_so(home: Paths, fake: FakeTelegram) -> None:
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies='["x"]') + channel_config(fake))
    assert hc(home, "up").returncode == 0
    try:
        listed = wait_for(lambda: json.loads(hc(home, "channels", "list", "--json").stdout)["channels"])
        assert listed[0]["state"] == "failed" and "hermitcrab secrets set telegram" in listed[0]["error"]
    finally:
        hc(home, "down")


def test_a_long_answer_is_split_where_the_service_takes_it() -> None:
    text = "\n\n".join(f"Paragraph {n}: " + "word " * 150 for n in range(12))
    pieces = split(text, 4096)
    assert len(pieces) > 1 and all(len(p) <= 4096 for p in pieces)
    assert " ".join(" ".join(pieces).split()) == " ".join(text.split())
    assert all(p.startswith("Paragraph") for p in pieces)  # cut between paragraphs
    assert split("x" * 9000, 4096) == ["x" * 4096, "x" * 4096, "x" * 808]


def test_the_allowlists_need_no_code_and_pairing_may_be_off(home: Paths, fake: FakeTelegram) -> None:
    lists = f"    owners: ['{OWNER}']\n    allow: ['{GUEST}']\n    pairing: false\n"
    home.config.write_text(
        SCRIPTED_CONFIG.format(port=free_port(), replies='["Bonjour!"]') + channel_config(fake) + lists
    )
    SecretStore(home.secrets).set(Secret("telegram", TOKEN))
    assert hc(home, "up").returncode == 0
    try:
        fake.say(OWNER, "Bonjour?")
        fake.say(GUEST, "Bonjour?")
        fake.say(STRANGER, "Bonjour?")
        wait_for(lambda: "Bonjour!" in fake.to(OWNER) and "Bonjour!" in fake.to(GUEST), what="both replies")
        (mine,) = [e for e in events(home, "main") if e["kind"] == "message"]
        assert mine["data"]["sender"] == "owner"
        (theirs,) = [e for e in events(home, f"telegram-{GUEST}") if e["kind"] == "message"]
        assert theirs["data"]["sender"] == f"telegram:{GUEST}" and theirs["data"]["approvals"] == "deny"
        fake.say(OWNER, "and again")  # by then the stranger's message has long been read
        wait_for(lambda: fake.to(OWNER).count("Bonjour!") == 2, what="the owner's second reply")
        assert fake.to(STRANGER) == [] and f"telegram-{STRANGER}" not in sessions(home)
    finally:
        hc(home, "down")


def test_a_file_lands_in_the_workspace_and_the_agent_is_told(bot: Paths, fake: FakeTelegram) -> None:
    pair(bot, fake, OWNER, "--owner")
    fake.send_file(OWNER, "report (final).txt", b"Revenue: 42\n", caption="Summarise this")
    wait_for(lambda: "Bonjour!" in fake.to(OWNER), what="the reply")
    (message,) = [e for e in events(bot, "main") if e["kind"] == "message"]
    kept = re.search(
        r"\[file received: /workspace/(inbox/telegram/\S+) \(12 bytes\)\]", message["data"]["text"]
    )
    assert message["data"]["text"].startswith("Summarise this") and kept, message["data"]["text"]
    assert kept.group(1).endswith("-report__final_.txt")  # a name made safe: no path in it
    assert (bot.workspace / kept.group(1)).read_bytes() == b"Revenue: 42\n"

    fake.send_file(OWNER, "huge.iso", b"x", caption="and this", size=30 * 2**20)
    wait_for(lambda: fake.to(OWNER).count("Encore?") == 1, what="the second reply")
    last = [e for e in events(bot, "main") if e["kind"] == "message"][-1]["data"]["text"]
    assert "not kept" in last and "over 20 MB" in last and TOKEN not in last


def test_a_photo_and_a_voice_note_land_in_the_workspace(bot: Paths, fake: FakeTelegram) -> None:
    pair(bot, fake, OWNER, "--owner")
    fake.send_file(OWNER, "", b"\xff\xd8 a jpeg", caption="What is this?", kind="photo")
    fake.send_file(OWNER, "", b"OggS a voice note", kind="voice")
    wait_for(lambda: "Encore?" in fake.to(OWNER), what="both replies")
    first, second = [e["data"]["text"] for e in events(bot, "main") if e["kind"] == "message"]
    photo = re.search(r"/workspace/(inbox/telegram/\S+-photo\.jpg) \(9 bytes\)", first)
    voice = re.search(r"/workspace/(inbox/telegram/\S+-voice\.ogg) \(17 bytes\)", second)
    assert photo and voice, (first, second)
    assert (bot.workspace / photo.group(1)).read_bytes() == b"\xff\xd8 a jpeg"  # the original, not the thumb
    assert (bot.workspace / voice.group(1)).read_bytes() == b"OggS a voice note"
