"""Email: mail comes in over IMAP (IDLE, so it arrives as it lands), answers go out over
SMTP, threaded under the mail they answer. A mail is marked read only once the gateway has
taken it, so one that came while the gateway was down, or was cut off mid-fetch, comes
again; the inbox takes a mail once (its Message-ID is the source id).

From: is easy to forge, so by default a mail counts as its sender's only when the receiving
server's own Authentication-Results (the topmost) says DMARC passed; anything else is
dropped unanswered, so a forged sender gets no pairing code either (no backscatter)."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import logging
import re
import smtplib
import ssl
import threading
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient

from hermitcrab.channels.base import Attachment, Inbound, Link

if TYPE_CHECKING:
    from hermitcrab.config.schema import EmailChannel

log = logging.getLogger("hermitcrab.channels")

MAX_FILE_BYTES = 20 * 1024 * 1024
IDLE_CHECK_S = 2.0  # how often an idle wait looks up (and so how soon `down` ends it)
IDLE_RENEW_S = 20 * 60  # servers drop an IDLE after 30 minutes
SUBJECTS_KEPT = 1000
QUOTE_START = re.compile(r"^(On .+ wrote:|-----Original Message-----|>)", re.MULTILINE)


class Email:
    limit = 100_000  # mail has no practical limit: one answer, one mail

    def __init__(self, name: str, config: EmailChannel, password: str) -> None:
        self.name, self.config = name, config
        self._password = password
        self.username = config.address
        self.link = Link(name)
        self._imap: IMAPClient | None = None
        self._subjects: dict[str, str] = {}  # Message-ID: its subject, for the answer's
        self._closed = threading.Event()

    # -- in ---------------------------------------------------------------------------

    def _connect(self) -> IMAPClient:
        config = self.config
        context = ssl.create_default_context()
        tls = config.security == "tls"
        client = IMAPClient(config.imap_host, config.imap_port, ssl=tls, ssl_context=context, timeout=30)
        if config.security == "starttls":
            client.starttls(context)
        client.login(config.username or config.address, self._password)
        client.select_folder(config.folder)
        return client

    def _unseen(self, client: IMAPClient) -> list[tuple[int, bytes]]:
        uids = client.search(["UNSEEN"])
        if not uids:
            return []
        fetched = client.fetch(uids, ["BODY.PEEK[]"])  # PEEK: read only once it is taken
        return [(uid, data[b"BODY[]"]) for uid, data in sorted(fetched.items()) if b"BODY[]" in data]

    def _wait(self, client: IMAPClient) -> None:
        """Block until the server says something changed, or it is time to renew the IDLE."""
        client.idle()
        try:
            waited = 0.0
            while not self._closed.is_set() and waited < IDLE_RENEW_S:
                if client.idle_check(timeout=IDLE_CHECK_S):
                    return
                waited += IDLE_CHECK_S
        finally:
            with contextlib.suppress(Exception):
                client.idle_done()

    async def receive(self) -> AsyncIterator[Inbound]:
        while not self._closed.is_set():
            try:
                if self._imap is None:
                    self._imap = await asyncio.to_thread(self._connect)
                self.link.up()
                for uid, raw in await asyncio.to_thread(self._unseen, self._imap):
                    inbound = self._inbound(raw)
                    if inbound is not None:
                        yield inbound  # taken (the inbox has it) when this resumes
                    await asyncio.to_thread(self._imap.add_flags, [uid], [b"\\Seen"])
                await asyncio.to_thread(self._wait, self._imap)
            except Exception as exc:  # imaplib's errors, sockets, TLS: all mean reconnect
                if self._closed.is_set():
                    return
                await asyncio.to_thread(self._drop)
                await self.link.down(f"IMAP: {type(exc).__name__}: {exc}")

    def _drop(self) -> None:
        client, self._imap = self._imap, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _inbound(self, raw: bytes) -> Inbound | None:
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        shown, address = parseaddr(str(mail.get("From", "")))
        sender = address.lower()
        message_id = str(mail.get("Message-ID", "")).strip()
        if not sender or sender == self.config.address.lower():
            return None  # our own mail, or no sender to answer
        if str(mail.get("Auto-Submitted", "no")).lower() != "no" or str(
            mail.get("Precedence", "")
        ).lower() in ("bulk", "list", "junk"):
            return None  # an auto-reply or a list: answering it could loop
        if self.config.trust == "authenticated" and not _dmarc_passed(mail):
            why = "DMARC did not pass (trust: authenticated)"
            self.link.last_error = f"a mail from {sender} was dropped: {why}"
            log.warning("channel %s: %s", self.name, self.link.last_error)
            return None
        subject = str(mail.get("Subject", "")).strip()
        if message_id:
            self._subjects[message_id] = subject
            while len(self._subjects) > SUBJECTS_KEPT:
                self._subjects.pop(next(iter(self._subjects)))
        body = mail.get_body(preferencelist=("plain", "html"))
        text = ""
        if body is not None:
            text = body.get_content()
            if body.get_content_subtype() == "html":
                import html2text

                text = html2text.html2text(text)
        files: list[Attachment] = []
        for part in mail.iter_attachments():
            data = part.get_payload(decode=True) or b""
            name = part.get_filename() or "file"
            if len(data) > MAX_FILE_BYTES:
                text += f"\n[a file came with this mail but was not kept: {name} is over 20 MB]"
            else:
                files.append(Attachment(name, data))
        return Inbound(
            channel=self.name,
            chat=sender,
            sender=sender,
            sender_name=shown or sender,
            text=_unquoted(text),
            message_id=message_id or hashlib.sha256(raw).hexdigest()[:32],
            direct=True,
            files=tuple(files),
        )

    # -- out --------------------------------------------------------------------------

    def _smtp(self) -> smtplib.SMTP:
        config, context = self.config, ssl.create_default_context()
        if config.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.smtp_host, config.smtp_port, context=context, timeout=30
            )
        else:
            smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=30)
            if config.security == "starttls":
                smtp.starttls(context=context)
        smtp.ehlo_or_helo_if_needed()
        if smtp.has_extn("auth"):
            smtp.login(config.username or config.address, self._password)
        return smtp

    def _send(self, mail: EmailMessage) -> None:
        with self._smtp() as smtp:
            smtp.send_message(mail)

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        mail = EmailMessage()
        mail["From"] = self.config.address
        mail["To"] = chat
        subject = self._subjects.get(in_reply_to or "", "") if in_reply_to else ""
        if subject:
            mail["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        else:
            mail["Subject"] = "From your agent"
        if in_reply_to:
            mail["In-Reply-To"] = mail["References"] = in_reply_to
        mail["Message-ID"] = make_msgid(domain=self.config.address.rpartition("@")[2] or None)
        mail["Auto-Submitted"] = "auto-replied"  # other robots do not answer it
        mail.set_content(text)
        try:
            await asyncio.to_thread(self._send, mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise RuntimeError(f"SMTP: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        self._closed.set()
        await asyncio.to_thread(self._drop)


def _dmarc_passed(mail: Any) -> bool:
    """The topmost Authentication-Results is the receiving server's own (one a sender wrote
    sits below it)."""
    results = mail.get_all("Authentication-Results") or []
    return bool(results) and re.search(r"\bdmarc=pass\b", str(results[0]), re.IGNORECASE) is not None


def _unquoted(text: str) -> str:
    """The new part of a reply: what comes before the quoted mail it answers."""
    found = QUOTE_START.search(text)
    kept = text[: found.start()] if found else text
    return kept.strip() or text.strip()
