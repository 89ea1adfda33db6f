"""IMAP and SMTP over implicit TLS and STARTTLS, with the server's certificate checked: dovecot
and aiosmtpd with a self-signed certificate that the client trusts explicitly."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from omnicc.app.emails import OutgoingEmail
from omnicc.channels.email.imap import ImapAccount, ImapError, ImapInbox
from omnicc.channels.email.mime import compose
from omnicc.channels.email.smtp import SmtpAccount, SmtpError, send
from tests.integration.email.servers import (
    Certificate,
    DeliveringHandler,
    Dovecot,
    PasswordCheck,
    corpus,
    free_port,
)

pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

USER = "support@support.example"


@pytest.fixture
def secured() -> Iterator[tuple[Dovecot, Certificate]]:
    root = Path(tempfile.mkdtemp(prefix="omnicc-dovecot-tls-"))
    root.chmod(0o755)
    certificate = Certificate.make(root)
    dovecot = Dovecot(root / "dovecot", [USER], certificate=certificate)
    dovecot.start()
    try:
        yield dovecot, certificate
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_imap_over_tls_and_starttls(secured: tuple[Dovecot, Certificate]) -> None:
    dovecot, certificate = secured
    raw = corpus("latin1.eml")
    dovecot.append(USER, raw)
    for security, port in (("tls", dovecot.tls_port), ("starttls", dovecot.port)):
        inbox = ImapInbox(ImapAccount("127.0.0.1", port, security, USER, dovecot.password,
                                      ssl_context=certificate.client_context()))
        await inbox.open()
        try:
            uids = await inbox.new_uids(0)
            assert len(uids) == 1
            fetched = await inbox.fetch(uids)
            assert fetched[uids[0]].replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
        finally:
            await inbox.close()
    # An untrusted certificate is refused, not ignored.
    for security, port in (("tls", dovecot.tls_port), ("starttls", dovecot.port)):
        with pytest.raises(ImapError):
            await ImapInbox(ImapAccount("127.0.0.1", port, security, USER,
                                        dovecot.password)).open()


def _outgoing() -> OutgoingEmail:
    return OutgoingEmail(
        email_id="e1", mailbox_id="m1", from_address=USER, from_name="Support",
        to=("customer@example.org",), subject="Re: TLS [#ABCD2345]",
        message_id="<tls-1@support.example>", date=datetime.now(UTC), in_reply_to="",
        references=(), text="Sent over TLS.")


async def test_smtp_over_tls_and_starttls_with_auth(
        secured: tuple[Dovecot, Certificate]) -> None:
    dovecot, certificate = secured
    handler = DeliveringHandler(dovecot)
    check = PasswordCheck("omnicc", "smtp-secret-1")
    starttls = Controller(handler, hostname="127.0.0.1", port=free_port(),
                          tls_context=certificate.server_context(), require_starttls=True,
                          authenticator=check, auth_required=True)
    # aiosmtpd counts only STARTTLS as TLS for AUTH; its implicit TLS is TLS all the same.
    implicit = Controller(handler, hostname="127.0.0.1", port=free_port(),
                          ssl_context=certificate.server_context(), authenticator=check,
                          auth_required=True, auth_require_tls=False)
    starttls.start()
    implicit.start()
    try:
        for security, port in (("starttls", starttls.port), ("tls", implicit.port)):
            await send(SmtpAccount("127.0.0.1", port, security, "omnicc", "smtp-secret-1",
                                   ssl_context=certificate.client_context()),
                       compose(_outgoing()), sender=USER, recipients=["customer@example.org"])
        assert [envelope[1] for envelope in handler.envelopes] == [
            ["customer@example.org"], ["customer@example.org"]]
        assert all(b"Message-ID: <tls-1@support.example>" in data
                   for _, _, data in handler.envelopes)
        with pytest.raises(SmtpError):  # a wrong password
            await send(SmtpAccount("127.0.0.1", starttls.port, "starttls", "omnicc", "wrong",
                                   ssl_context=certificate.client_context()),
                       compose(_outgoing()), sender=USER, recipients=["customer@example.org"])
        with pytest.raises(SmtpError):  # the server's certificate is not trusted
            await send(SmtpAccount("127.0.0.1", implicit.port, "tls", "omnicc",
                                   "smtp-secret-1"),
                       compose(_outgoing()), sender=USER, recipients=["customer@example.org"])
    finally:
        starttls.stop()
        implicit.stop()
