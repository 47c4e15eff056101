"""Matrix through the real daemon and matrix-nio, against a loopback homeserver speaking the
client-server API: an invite is accepted and a stranger gets a pairing code; the owner
talks; a group answers when the agent is named; a restart goes on from the stored sync
token (nothing missed, nothing answered twice); a file lands in the workspace; a homeserver
outage is retried with backoff and loses nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import Secret, SecretStore
from tests.channels.fake_matrix import BOT, TOKEN, FakeMatrix
from tests.channels.test_telegram import events, sessions
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

OWNER, GUEST, STRANGER = "@ana:example.test", "@bo:example.test", "@who:elsewhere.test"
DM, GROUP = "!dm:example.test", "!group:example.test"


@pytest.fixture
def fake() -> Iterator[FakeMatrix]:
    server = FakeMatrix()
    running = server.serve()
    yield server
    running.should_exit = True


def start(home: Paths, fake: FakeMatrix, extra: str = "") -> Paths:
    replies = json.dumps(["Bonjour!", "Encore?", "Toujours."])
    channel = (
        f"\nchannels:\n  matrix:\n    type: matrix\n    homeserver: {fake.url}\n"
        f"    user_id: '{BOT}'\n    poll_seconds: 1\n{extra}"
    )
    home.config.write_text(SCRIPTED_CONFIG.format(port=free_port(), replies=replies) + channel)
    SecretStore(home.secrets).set(Secret("matrix", TOKEN))
    assert hc(home, "up").returncode == 0
    wait_for(lambda: len(fake.syncs) >= 2, what="the first sync done")  # what came before is history
    return home


@pytest.fixture
def bot(home: Paths, fake: FakeMatrix) -> Iterator[Paths]:
    yield start(home, fake)
    hc(home, "down")


@pytest.fixture
def owned(home: Paths, fake: FakeMatrix) -> Iterator[Paths]:
    fake.room(DM, OWNER)
    yield start(home, fake, f"    owners: ['{OWNER}']\n")
    hc(home, "down")


def test_an_invite_is_taken_and_a_stranger_pairs(bot: Paths, fake: FakeMatrix) -> None:
    fake.room(DM, STRANGER, invite=True)
    wait_for(lambda: BOT in fake.rooms[DM].members, what="the invite accepted")
    fake.say(DM, STRANGER, "hello?")
    said = wait_for(lambda: [t for t in fake.to(DM) if "pairing code" in t], what="a code")
    code = re.search(r"pairing code is ([A-Z0-9]{6})", said[0])
    assert code and sessions(bot) == {}
    assert hc(bot, "pairing", "approve", code.group(1), "--owner").returncode == 0
    wait_for(lambda: any("You are paired" in t for t in fake.to(DM)), what="the welcome, in the direct chat")
    fake.say(DM, STRANGER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(DM), what="the reply")
    (message,) = [e for e in events(bot, "main") if e["kind"] == "message"]
    assert message["data"]["sender"] == "owner" and message["data"]["source"] == "matrix"


def test_a_group_answers_when_the_agent_is_named(bot: Paths, fake: FakeMatrix) -> None:
    fake.room(GROUP, GUEST, STRANGER)
    fake.say(GROUP, GUEST, "anyone?")
    fake.say(GROUP, GUEST, "crab: bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(GROUP), what="the group's reply")
    (message,) = [e for e in events(bot, "matrix-group-_group:example.test") if e["kind"] == "message"]
    assert message["data"]["text"] == "crab: bonjour?" and message["data"]["approvals"] == "deny"
    assert len(fake.to(GROUP)) == 1  # no code in a group, no answer to the unnamed message


def test_a_restart_goes_on_from_the_stored_token(owned: Paths, fake: FakeMatrix) -> None:
    fake.say(DM, OWNER, "one")
    wait_for(lambda: "Bonjour!" in fake.to(DM), what="the first reply")
    assert hc(owned, "down").returncode == 0
    fake.say(DM, OWNER, "two")  # while the gateway is down
    syncs = len(fake.syncs)
    assert hc(owned, "up").returncode == 0
    # The scripted model starts its replies again in the new process.
    wait_for(lambda: fake.to(DM) == ["Bonjour!", "Bonjour!"], what="the message sent while down, answered")
    assert fake.syncs[syncs] is not None  # it went on from its token: not a first sync
    texts = [e["data"]["text"] for e in events(owned, "main") if e["kind"] == "message"]
    assert texts == ["one", "two"]


def test_a_file_lands_in_the_workspace(owned: Paths, fake: FakeMatrix) -> None:
    fake.say(DM, OWNER, file=("notes.txt", b"Revenue: 42\n"))
    wait_for(lambda: "Bonjour!" in fake.to(DM), what="the reply")
    (message,) = [e for e in events(owned, "main") if e["kind"] == "message"]
    kept = re.search(
        r"\[file received: /workspace/(inbox/matrix/\S+) \(12 bytes\)\]", message["data"]["text"]
    )
    assert kept and (owned.workspace / kept.group(1)).read_bytes() == b"Revenue: 42\n"


def test_an_outage_is_retried_and_loses_nothing(owned: Paths, fake: FakeMatrix) -> None:
    def channel() -> dict:
        return json.loads(hc(owned, "channels", "list", "--json").stdout)["channels"][0]

    fake.down_for = 3
    wait_for(lambda: channel()["state"] == "reconnecting", what="the outage seen")
    fake.say(DM, OWNER, "Bonjour?")
    wait_for(lambda: "Bonjour!" in fake.to(DM), timeout=60, what="the reply after the outage")
    now = wait_for(lambda: (c := channel())["state"] == "connected" and c, what="connected again")
    assert "Bad Gateway" in (now["error"] or "") and fake.down_for == 0
    assert TOKEN not in (owned.logs / "gateway.log").read_text()
