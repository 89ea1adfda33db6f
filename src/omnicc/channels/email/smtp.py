"""Sending over SMTP (aiosmtplib): implicit TLS (465), STARTTLS (587) or plain, with AUTH when
the mailbox has a user. The envelope sender is the mailbox's address, so bounces come back to
the mailbox we read."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib


class SmtpError(RuntimeError):
    """The server refused the email or could not be reached (the outbox retries)."""


@dataclass(frozen=True, slots=True)
class SmtpAccount:
    host: str
    port: int
    security: str  # tls, starttls or plain
    username: str = ""
    password: str = ""
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = None


async def send(account: SmtpAccount, message: EmailMessage, *, sender: str,
               recipients: list[str]) -> None:
    try:
        await aiosmtplib.send(
            message, sender=sender, recipients=recipients, hostname=account.host,
            port=account.port, username=account.username or None,
            password=account.password or None if account.username else None,
            use_tls=account.security == "tls", start_tls=account.security == "starttls",
            tls_context=account.ssl_context, timeout=account.timeout_s)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise SmtpError(f"SMTP {account.host}:{account.port}: {error}") from error
