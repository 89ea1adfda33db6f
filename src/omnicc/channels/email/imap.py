"""Reading a mailbox over IMAP (aioimaplib): new messages by UID, IDLE when the server has it.

A message is fetched with `BODY.PEEK[]` (fetching does not mark it read) and flagged `\\Seen`
only after OmniCC has committed it; the read position is the mailbox's `last_uid` under its
`UIDVALIDITY`, so a crash between the commit and the flag re-reads the message and the store
recognises it. TLS is implicit TLS (port 993) or STARTTLS on the plain port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass
from typing import Any, Final

import aioimaplib

UID_IN_FETCH: Final = re.compile(rb"UID (\d+)")
UIDVALIDITY: Final = re.compile(rb"UIDVALIDITY (\d+)")
FETCH_BATCH: Final = 50


class ImapError(RuntimeError):
    """The server refused a command or could not be reached."""


@dataclass(frozen=True, slots=True)
class ImapAccount:
    host: str
    port: int
    security: str  # tls, starttls or plain
    username: str
    password: str
    folder: str = "INBOX"
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = None


def _ok(response: Any, what: str) -> Any:
    if response.result != "OK":
        detail = b" ".join(bytes(line) for line in response.lines[-1:]).decode(errors="replace")
        raise ImapError(f"IMAP {what} failed: {response.result} {detail}".strip())
    return response


class ImapInbox:
    """One logged-in connection to one folder."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self._client: aioimaplib.IMAP4 | None = None
        self.uid_validity: int | None = None

    @property
    def client(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise ImapError("not connected")
        return self._client

    @property
    def supports_idle(self) -> bool:
        return "IDLE" in self.client.protocol.capabilities

    async def open(self) -> None:
        account = self.account
        context = account.ssl_context or ssl.create_default_context()
        try:
            if account.security == "tls":
                self._client = aioimaplib.IMAP4_SSL(account.host, account.port,
                                                    timeout=account.timeout_s,
                                                    ssl_context=context)
            else:
                self._client = aioimaplib.IMAP4(account.host, account.port,
                                                timeout=account.timeout_s)
            await self.client.wait_hello_from_server()
            if account.security == "starttls":
                await self._start_tls(context)
            _ok(await self.client.login(account.username, account.password), "LOGIN")
            selected = _ok(await self.client.select(_quoted(account.folder)), "SELECT")
        except (TimeoutError, OSError, aioimaplib.AioImapException) as error:
            await self.close()
            raise ImapError(f"IMAP {account.host}:{account.port}: {error}") from error
        for line in selected.lines:
            found = UIDVALIDITY.search(bytes(line))
            if found:
                self.uid_validity = int(found.group(1))

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        """aioimaplib knows the STARTTLS command but not the upgrade: the transport is
        wrapped here, and the capabilities read again (they change after TLS)."""
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError("the server does not offer STARTTLS")
        _ok(await protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(),
                                                       loop=protocol.loop)), "STARTTLS")
        loop = asyncio.get_running_loop()
        protocol.transport = await loop.start_tls(protocol.transport, protocol, context,
                                                  server_hostname=self.account.host)
        protocol.capabilities = set()
        await protocol.capability()

    async def new_uids(self, after_uid: int) -> list[int]:
        """UIDs above `after_uid`, ascending (`n:*` always names the last message, even an
        old one, hence the filter)."""
        response = _ok(await self.client.uid_search(f"UID {after_uid + 1}:*", charset=None),
                       "UID SEARCH")
        uids: set[int] = set()
        for line in response.lines[:-1]:
            text = bytes(line).decode(errors="replace")
            uids.update(int(word) for word in text.split() if word.isdigit())
        return sorted(uid for uid in uids if uid > after_uid)

    async def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """The raw bytes of these messages, by UID (without setting \\Seen)."""
        found: dict[int, bytes] = {}
        for start in range(0, len(uids), FETCH_BATCH):
            batch = ",".join(str(uid) for uid in uids[start:start + FETCH_BATCH])
            response = _ok(await self.client.uid("fetch", batch, "(UID BODY.PEEK[])"),
                           "UID FETCH")
            lines = response.lines
            for index, line in enumerate(lines[:-1]):
                if isinstance(line, bytearray) or b"FETCH" not in line:
                    continue
                uid = UID_IN_FETCH.search(line)
                if uid is not None and index + 1 < len(lines) and isinstance(
                        lines[index + 1], bytearray):
                    found[int(uid.group(1))] = bytes(lines[index + 1])
        return found

    async def mark_seen(self, uids: list[int]) -> None:
        """Flag these messages `\\Seen`, `FETCH_BATCH` UIDs per command."""
        for start in range(0, len(uids), FETCH_BATCH):
            batch = ",".join(str(uid) for uid in uids[start:start + FETCH_BATCH])
            _ok(await self.client.uid("store", batch, "+FLAGS.SILENT", "(\\Seen)"),
                "UID STORE")

    async def wait_for_news(self, timeout_s: float) -> None:
        """Until the server says the folder changed (IDLE) or `timeout_s` passes."""
        client = self.client
        idle = await client.idle_start(timeout=timeout_s)
        try:
            while True:
                push = await client.wait_server_push(timeout=timeout_s + 5)
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break
                if any(b"EXISTS" in bytes(line) or b"RECENT" in bytes(line)
                       for line in push):
                    break
        except TimeoutError:
            pass
        finally:
            client.idle_done()
            with contextlib.suppress(TimeoutError, aioimaplib.AioImapException):
                async with asyncio.timeout(10):
                    await idle

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):  # best effort: the connection may be gone
            async with asyncio.timeout(5):
                await client.logout()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
