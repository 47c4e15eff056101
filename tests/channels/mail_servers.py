"""Real mail servers on loopback: Debian's Dovecot for IMAP (run by hand from a config in a
temporary folder: no system service), and aiosmtpd for SMTP, which keeps what it is sent."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from imapclient import IMAPClient

from tests.conftest import free_port

ADDRESS, PASSWORD = "crab@example.test", "mail-s3cret"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def dovecot_missing() -> str | None:
    if not Path(DOVECOT).exists():
        return "Dovecot is not installed (Debian's dovecot-imapd; .ci/run installs it)"
    return None


@dataclass
class Dovecot:
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hc-dovecot-")))
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        os.chmod(self.root, 0o755)  # its unprivileged users go through it
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        (self.root / "dovecot.conf").write_text(CONFIG.format(root=self.root, port=self.port))
        (self.root / "passwd").write_text(f"{ADDRESS}:{{PLAIN}}{PASSWORD}\n")
        shutil.chown(self.root / "mail", "dovecot", "dovecot")
        (self.root / "run" / "master.pid").unlink(missing_ok=True)
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.client().logout()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Dovecot did not start: {(self.root / 'dovecot.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(ADDRESS, PASSWORD)
        return client

    def deliver(self, mail: EmailMessage | bytes) -> None:
        """Put a mail in the inbox, as the mail server's delivery would."""
        client = self.client()
        try:
            client.append("INBOX", mail if isinstance(mail, bytes) else mail.as_bytes())
        finally:
            client.logout()

    def seen(self) -> int:
        client = self.client()
        try:
            client.select_folder("INBOX", readonly=True)
            return len(client.search(["SEEN"]))
        finally:
            client.logout()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class _Keeper:
    def __init__(self) -> None:
        self.mails: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"


@dataclass
class Smtp:
    port: int = field(default_factory=free_port)
    logins: list[str] = field(default_factory=list)

    def start(self) -> Smtp:
        self.keeper = _Keeper()

        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = data.login.decode() == ADDRESS and data.password.decode() == PASSWORD
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok)

        self.controller = Controller(
            self.keeper,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=check,
            auth_require_tls=False,  # loopback, in a test
            auth_required=True,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Any]:
        return [m for m in self.keeper.mails if address in str(m["To"])]


def mail(
    sender: str, text: str, subject: str = "Hello", *, dmarc: bool = True, **headers: str
) -> EmailMessage:
    message = EmailMessage()
    if dmarc:  # what the receiving server adds on top; a sender's own would sit below it
        message["Authentication-Results"] = f"mx.example.test; dmarc=pass header.from={sender.split('@')[1]}"
    message["From"], message["To"], message["Subject"] = sender, ADDRESS, subject
    message["Message-ID"] = headers.pop("message_id", f"<{time.monotonic_ns()}@{sender.split('@')[1]}>")
    for key, value in headers.items():
        message[key.replace("_", "-")] = value
    message.set_content(text)
    return message
