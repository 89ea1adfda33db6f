"""Real mail servers on loopback for the email tests: Debian's dovecot (IMAP, with IDLE) in a
throwaway configuration with passwd-file users, and aiosmtpd as the SMTP server, with a handler
that delivers each accepted email into the recipient's dovecot mailbox (IMAP APPEND), so what
OmniCC sends can be read back over IMAP like a customer would.

A missing dovecot fails the tests (scripts/test_packages.sh installs it), never skips them.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

START_TIMEOUT_S = 20.0
CORPUS = Path(__file__).parent / "corpus"


def corpus(name: str, **values: str) -> bytes:
    """A corpus email with `{placeholders}` filled in (ids only known at run time)."""
    raw = (CORPUS / name).read_bytes()
    for key, value in values.items():
        raw = raw.replace(("{" + key + "}").encode(), value.encode())
    return raw


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""

    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> Certificate:
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
                        "-out", str(cert)], check=True, capture_output=True)
        key.chmod(0o644)  # dovecot reads it as its own user
        return cls(cert, key)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _dovecot_binary() -> str:
    found = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot",) if os.path.exists(p)), None)
    if found is None:
        pytest.fail("dovecot is not installed: run scripts/test_packages.sh (dovecot-imapd)")
    return found


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass
class Dovecot:
    """A dovecot IMAP server with one mailbox per user (password = `password`)."""

    root: Path
    users: list[str]
    password: str = "imap-secret-1"
    port: int = field(default_factory=free_port)
    certificate: Certificate | None = None
    """With one: STARTTLS on `port` and implicit TLS on `tls_port`."""
    tls_port: int = 0
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _dovecot_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        lines = []
        for user in self.users:
            home = self.root / "home" / user
            home.mkdir(parents=True, exist_ok=True)
            shutil.chown(home, "dovecot", "dovecot")
            lines.append(f"{user}:{{PLAIN}}{self.password}::::{home}::"
                         "userdb_uid=dovecot userdb_gid=dovecot")
        (self.root / "users").write_text("\n".join(lines) + "\n")
        config = self.root / "dovecot.conf"
        ssl = "ssl = no"
        if self.certificate is not None:
            self.tls_port = free_port()
            ssl = (f"ssl = yes\nssl_cert = <{self.certificate.cert}\n"
                   f"ssl_key = <{self.certificate.key}")
        config.write_text(CONFIG.format(root=self.root, port=self.port, ssl=ssl,
                                        imaps_port=self.tls_port) + self.extra_config)
        self.process = subprocess.Popen([binary, "-F", "-c", str(config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                pytest.fail(f"dovecot did not start: {output}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail("dovecot did not listen in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(user, self.password)
        return client

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        client = self.client(user)
        try:
            status, _ = client.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"
        finally:
            client.logout()

    def messages(self, user: str) -> list[tuple[bytes, bytes]]:
        """(flags, raw bytes) of every message in the user's INBOX, in UID order."""
        client = self.client(user)
        try:
            client.select("INBOX")
            _, data = client.uid("SEARCH", "ALL")
            found = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                head, body = parts[0]  # type: ignore[misc]
                found.append((head, body))
            return found
        finally:
            client.logout()

    def expunge_all(self, user: str) -> None:
        client = self.client(user)
        try:
            client.select("INBOX")
            client.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
            client.expunge()
        finally:
            client.logout()


class DeliveringHandler:
    """aiosmtpd handler: accepts mail for dovecot's users and APPENDs it to their INBOX;
    `refuse` makes it answer 451 (a temporary failure) to test retries."""

    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot
        self.refuse = False
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "451 4.3.0 Try again later"
        data = envelope.original_content or b""
        self.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos), data))
        for recipient in envelope.rcpt_tos:
            if recipient.lower() in self.dovecot.users:
                self.dovecot.append(recipient.lower(), data)
        return "250 OK delivered"


class PasswordCheck:
    def __init__(self, username: str, password: str) -> None:
        self.expected = (username.encode(), password.encode())

    def __call__(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (
                auth_data.login, auth_data.password) == self.expected:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass
class MailServers:
    dovecot: Dovecot
    smtp: Controller
    handler: DeliveringHandler
    smtp_user: str
    smtp_password: str


def mail_servers(users: list[str], *, dovecot_config: str = "") -> Iterator[MailServers]:
    """Not under pytest's tmp_path: its parents are private to root, and dovecot's users
    must reach their homes. `dovecot_config` is added to dovecot's configuration."""
    root = Path(tempfile.mkdtemp(prefix="omnicc-dovecot-"))
    dovecot = Dovecot(root, users, extra_config=dovecot_config)
    dovecot.start()
    handler = DeliveringHandler(dovecot)
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port(),
                      authenticator=PasswordCheck("omnicc", "smtp-secret-1"),
                      auth_require_tls=False, auth_required=True)
    smtp.start()
    try:
        yield MailServers(dovecot, smtp, handler, "omnicc", "smtp-secret-1")
    finally:
        smtp.stop()
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)
