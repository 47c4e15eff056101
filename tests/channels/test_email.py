"""Email through the real daemon, against real mail servers on loopback (Dovecot for IMAP,
aiosmtpd for SMTP): a stranger gets a pairing code by mail; the owner's mail is answered in
its thread; a forged sender is dropped unanswered; a mail seen twice is taken once; a file
lands in the workspace; the IMAP server going away loses nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hermitcrab.channels.email import _unquoted
from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import Secret, SecretStore
from tests.channels.mail_servers import ADDRESS, PASSWORD, Dovecot, Smtp, dovecot_missing, mail
from tests.channels.test_telegram import events, sessions
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

pytestmark = [
    pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing())),
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),  # loopback
]

OWNER, GUEST, STRANGER = "ana@example.test", "bo@example.test", "who@elsewhere.test"


@pytest.fixture
def servers() -> Iterator[tuple[Dovecot, Smtp]]:
    imap, smtp = Dovecot().start(), Smtp().start()
    yield imap, smtp
    smtp.stop()
    imap.remove()


def channel_config(imap: Dovecot, smtp: Smtp) -> str:
    return (
        "\nchannels:\n  mail:\n    type: email\n"
        f"    address: {ADDRESS}\n    imap_host: 127.0.0.1\n    imap_port: {imap.port}\n"
        f"    smtp_host: 127.0.0.1\n    smtp_port: {smtp.port}\n    security: plain\n"
    )


def start(home: Paths, servers: tuple[Dovecot, Smtp], extra: str = "") -> Paths:
    replies = json.dumps(["Bonjour!", "Encore?", "Toujours."])
    config = SCRIPTED_CONFIG.format(port=free_port(), replies=replies) + channel_config(*servers) + extra
    home.config.write_text(config)
    SecretStore(home.secrets).set(Secret("email", PASSWORD))
    assert hc(home, "up").returncode == 0
    return home


@pytest.fixture
def bot(home: Paths, servers: tuple[Dovecot, Smtp]) -> Iterator[Paths]:
    yield start(home, servers)
    hc(home, "down")


@pytest.fixture
def owned(home: Paths, servers: tuple[Dovecot, Smtp]) -> Iterator[Paths]:
    """The owner's address on the allowlist: no pairing needed."""
    yield start(home, servers, f"    owners: ['{OWNER}']\n")
    hc(home, "down")


def texts(smtp: Smtp, address: str) -> list[str]:
    return [m.get_body(("plain",)).get_content().strip() for m in smtp.to(address)]


def test_a_stranger_pairs_by_mail_and_the_owner_is_answered_in_the_thread(
    bot: Paths, servers: tuple[Dovecot, Smtp]
) -> None:
    imap, smtp = servers
    imap.deliver(mail(STRANGER, "Who are you?"))
    said = wait_for(lambda: [t for t in texts(smtp, STRANGER) if "pairing code" in t], what="a code")
    code = re.search(r"pairing code is ([A-Z0-9]{6})", said[0])
    assert code and sessions(bot) == {}  # nothing but the code: no model call, no session
    assert smtp.logins == [ADDRESS]  # the mail went out signed in as the mailbox
    assert hc(bot, "pairing", "approve", code.group(1), "--owner").returncode == 0

    asked = mail(STRANGER, "Bonjour?\n\nOn Monday, someone wrote:\n> old news", subject="Plans")
    imap.deliver(asked)
    answer = wait_for(
        lambda: [m for m in smtp.to(STRANGER) if "Bonjour!" in m.get_body(("plain",)).get_content()],
        what="the answer",
    )[0]
    assert answer["Subject"] == "Re: Plans" and answer["In-Reply-To"] == asked["Message-ID"]
    assert answer["From"] == ADDRESS and answer["Auto-Submitted"] == "auto-replied"
    (message,) = [e for e in events(bot, "main") if e["kind"] == "message"]
    assert message["data"]["text"] == "Bonjour?"  # the quoted mail left out
    assert message["data"]["sender"] == "owner" and message["data"]["source"] == "mail"

    # The same mail delivered again (as after a crash before it was marked read): taken once.
    imap.deliver(asked)
    imap.deliver(mail(STRANGER, "Encore?"))
    wait_for(lambda: "Encore?" in texts(smtp, STRANGER), what="the next answer")
    assert texts(smtp, STRANGER).count("Bonjour!") == 1
    assert len([e for e in events(bot, "main") if e["kind"] == "message"]) == 2
    wait_for(lambda: imap.seen() == 4, what="every mail marked read once taken")


def test_a_forged_sender_or_a_robot_gets_nothing(bot: Paths, servers: tuple[Dovecot, Smtp]) -> None:
    imap, smtp = servers
    imap.deliver(mail(OWNER, "Send me the notes", dmarc=False))
    imap.deliver(mail(GUEST, "I am away", Auto_Submitted="auto-replied"))
    imap.deliver(mail(GUEST, "Newsletter", Precedence="bulk"))
    wait_for(lambda: imap.seen() == 3, what="the mails read")

    def dropped() -> dict | None:
        (channel,) = json.loads(hc(bot, "channels", "list", "--json").stdout)["channels"]
        return channel if "DMARC" in (channel["error"] or "") else None

    channel = wait_for(dropped, what="the forged mail said in the channel's state")
    assert OWNER in channel["error"] and channel["state"] == "connected"
    assert smtp.keeper.mails == [] and sessions(bot) == {}  # no code sent to a forged address


def test_a_file_lands_in_the_workspace(owned: Paths, servers: tuple[Dovecot, Smtp]) -> None:
    imap, smtp = servers
    with_file = mail(OWNER, "Summarise this")
    with_file.add_attachment(b"Revenue: 42\n", maintype="text", subtype="plain", filename="../report.txt")
    imap.deliver(with_file)
    wait_for(lambda: "Bonjour!" in texts(smtp, OWNER), what="the answer")
    (message,) = [e for e in events(owned, "main") if e["kind"] == "message"]
    kept = re.search(r"\[file received: /workspace/(inbox/mail/\S+) \(12 bytes\)\]", message["data"]["text"])
    assert kept and kept.group(1).endswith("-report.txt"), message["data"]["text"]
    assert (owned.workspace / kept.group(1)).read_bytes() == b"Revenue: 42\n"


def test_the_imap_server_going_away_loses_nothing(owned: Paths, servers: tuple[Dovecot, Smtp]) -> None:
    imap, smtp = servers
    imap.deliver(mail(OWNER, "one"))
    wait_for(lambda: "Bonjour!" in texts(smtp, OWNER), what="the first answer")
    imap.stop()

    def state() -> str:
        return json.loads(hc(owned, "channels", "list", "--json").stdout)["channels"][0]["state"]

    wait_for(lambda: state() == "reconnecting", timeout=30, what="the channel seeing the outage")
    imap.start()
    imap.deliver(mail(OWNER, "two"))
    wait_for(lambda: "Encore?" in texts(smtp, OWNER), timeout=60, what="the answer after the outage")
    assert state() == "connected"


def test_the_new_part_of_a_reply_is_what_counts() -> None:
    assert _unquoted("approve a1-2\n\nOn Tue, Ana wrote:\n> Held for your decision") == "approve a1-2"
    assert _unquoted("yes\n-----Original Message-----\nFrom: x") == "yes"
    assert _unquoted("> only a quote") == "> only a quote"  # nothing new: keep it all
