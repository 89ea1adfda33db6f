"""SIP message parsing and serialization (RFC 3261 §7, §20, §25).

Pure: bytes in, typed values out, and back. No I/O.

- ``parse_datagram(data)`` parses one message received over UDP: a body shorter than
  Content-Length is an error, a longer one is truncated (§18.3).
- ``parse_stream(buffer)`` frames one message from a stream (TCP, TLS) and returns
  ``(message | None, rest)``; ``None`` means more bytes are needed. Leading CRLFs (keep-alives,
  §7.5) are skipped. Content-Length is mandatory on streams.
- ``SipRequest.to_bytes()`` / ``SipResponse.to_bytes()`` serialize; Content-Length is always
  written and always equals the body length, so ``parse(msg.to_bytes()) == msg``.

Header names are case-insensitive and compact forms (``i``, ``m``, ``v`` ...) are expanded to
their long form on parse. Values of list headers may be comma-separated or repeated on several
lines; ``Headers.values()`` returns them one by one either way. Folded lines are unfolded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "Via",
    "parse_cseq",
    "parse_datagram",
    "parse_message",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_stream",
    "parse_via",
    "parse_via_list",
    "split_list",
    "uri_user",
]

CRLF = b"\r\n"
_HEADER_END = b"\r\n\r\n"
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # undecodable bytes survive a round trip
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

# RFC 3261 §7.3.3 and later RFCs (Event, Refer-To, Referred-By, Allow-Events, Session-Expires).
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "v": "Via",
    "f": "From",
    "t": "To",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN_RE = re.compile(rf"[{_TOKEN_CHARS}]+")
_REQUEST_LINE_RE = re.compile(rf"([{_TOKEN_CHARS}]+) (\S+) (SIP/\d+\.\d+)", re.IGNORECASE)
_STATUS_LINE_RE = re.compile(r"(SIP/\d+\.\d+) (\d+) (.*)", re.IGNORECASE | re.DOTALL)
_VERSION_RE = re.compile(r"SIP/\d+\.\d+", re.IGNORECASE)
_SENT_PROTOCOL_RE = re.compile(
    rf"\s*([{_TOKEN_CHARS}]+)\s*/\s*([{_TOKEN_CHARS}]+)\s*/\s*([{_TOKEN_CHARS}]+)\s+(.*)",
    re.DOTALL,
)
_HOSTPORT_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:\s*:\s*(\d+))?\s*")
_CSEQ_RE = re.compile(rf"\s*(\d+)\s+([{_TOKEN_CHARS}]+)\s*")
_MAX_CSEQ = 2**31 - 1


class SipParseError(ValueError):
    """A SIP message or header value is malformed; the message says what and where."""


def canonical_name(name: str) -> str:
    """The long, conventionally capitalised form of a header name (compact forms expanded)."""
    lowered = name.lower()
    if lowered in COMPACT_FORMS:
        return COMPACT_FORMS[lowered]
    return _CANONICAL.get(lowered, name)


# ---------------------------------------------------------------------------------------------
# Small lexical helpers


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and ``<...>``; strip each item."""
    items: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    i = 0
    while i < len(value):
        ch = value[i]
        if in_quotes:
            current.append(ch)
            if ch == "\\" and i + 1 < len(value):
                current.append(value[i + 1])
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
            current.append(ch)
        elif ch == "<":
            in_angle = True
            current.append(ch)
        elif ch == ">":
            in_angle = False
            current.append(ch)
        elif ch == "," and not in_angle:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {value!r}")
    items.append("".join(current).strip())
    return [item for item in items if item]


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted string whose opening quote is at ``start``; return (unescaped, next index)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_params(text: str, where: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (leading ``;`` required). Names are lower-cased."""
    params: dict[str, str | None] = {}
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return params
        if text[i] != ";":
            raise SipParseError(f"{where}: expected ';' before parameter in {text!r}")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        start = i
        while i < n and text[i] not in "=; \t":
            i += 1
        name = text[start:i]
        if not _is_token(name):
            raise SipParseError(f"{where}: bad parameter name in {text!r}")
        while i < n and text[i] in " \t":
            i += 1
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                value, i = _read_quoted(text, i)
            else:
                start = i
                while i < n and text[i] not in "; \t":
                    i += 1
                value = text[start:i]
                if not value:
                    raise SipParseError(f"{where}: empty value for parameter {name!r}")
        params[name.lower()] = value


def _format_params(params: dict[str, str | None]) -> str:
    parts: list[str] = []
    for name, value in params.items():
        if value is None:
            parts.append(f";{name}")
        elif _is_token(value) or re.fullmatch(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+", value):
            parts.append(f";{name}={value}")
        else:
            parts.append(f";{name}={_quote(value)}")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Typed header values


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry (§20.42): ``SIP/2.0/UDP host:port;branch=...;received=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport_requested(self) -> bool:
        """True when the ``rport`` parameter is present, with or without a value (RFC 3581)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value is not None else None

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hostport}{_format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse a single Via value (no commas)."""
    match = _SENT_PROTOCOL_RE.fullmatch(value)
    if match is None:
        raise SipParseError(f"Via: expected 'SIP/2.0/<transport> <sent-by>' in {value!r}")
    name, version, transport, rest = match.groups()
    hostport = _HOSTPORT_RE.match(rest)
    if hostport is None or not hostport.group(1):
        raise SipParseError(f"Via: bad sent-by in {value!r}")
    host = hostport.group(1)
    port: int | None = None
    if hostport.group(2) is not None:
        port = int(hostport.group(2))
        if not 0 < port < 65536:
            raise SipParseError(f"Via: port {port} out of range in {value!r}")
    params = _parse_params(rest[hostport.end() :], "Via")
    rport = params.get("rport")
    if rport is not None and not rport.isdigit():
        raise SipParseError(f"Via: rport must be a port number, got {rport!r}")
    if "branch" in params and params["branch"] is None:
        raise SipParseError(f"Via: branch without a value in {value!r}")
    return Via(
        transport=transport.upper(),
        host=host,
        port=port,
        params=params,
        protocol=f"{name.upper()}/{version}",
    )


def parse_via_list(value: str) -> list[Via]:
    """Parse a possibly comma-separated Via header value."""
    return [parse_via(item) for item in split_list(value)]


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, Route ... (§20.10, §25.1 name-addr / addr-spec) with header params."""

    uri: str
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_params(self, **params: str | None) -> NameAddr:
        return NameAddr(self.uri, self.display_name, {**self.params, **params})

    def __str__(self) -> str:
        display = ""
        if self.display_name is not None:
            display = _quote(self.display_name) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Name" <uri>;params``, ``Name <uri>;params``, ``<uri>;params`` or ``uri;params``.

    Without angle brackets, everything after the first ``;`` is a header parameter (§20.10).
    """
    text = value.strip()
    if not text:
        raise SipParseError("name-addr: empty value")
    display: str | None = None
    i = 0
    if text.startswith('"'):
        display, i = _read_quoted(text, 0)
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text) or text[i] != "<":
            raise SipParseError(f"name-addr: expected '<' after display name in {value!r}")
    else:
        angle = text.find("<")
        if angle > 0:
            candidate = text[:angle].strip()
            if candidate and not all(_is_token(word) for word in candidate.split()):
                raise SipParseError(f"name-addr: bad display name in {value!r}")
            display = " ".join(candidate.split()) or None
            i = angle
    if i < len(text) and text[i] == "<":
        end = text.find(">", i)
        if end < 0:
            raise SipParseError(f"name-addr: missing '>' in {value!r}")
        uri = text[i + 1 : end].strip()
        rest = text[end + 1 :]
    else:
        semi = text.find(";")
        uri = (text if semi < 0 else text[:semi]).strip()
        rest = "" if semi < 0 else text[semi:]
        if any(ch in uri for ch in " \t,?"):
            raise SipParseError(f"name-addr: addr-spec with reserved characters in {value!r}")
    if not uri or ":" not in uri:
        raise SipParseError(f"name-addr: bad URI {uri!r} in {value!r}")
    return NameAddr(uri=uri, display_name=display, params=_parse_params(rest, "name-addr"))


def parse_name_addr_list(value: str) -> list[NameAddr]:
    return [parse_name_addr(item) for item in split_list(value)]


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq (§20.16): sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    match = _CSEQ_RE.fullmatch(value)
    if match is None:
        raise SipParseError(f"CSeq: expected '<number> <method>', got {value!r}")
    number = int(match.group(1))
    if number > _MAX_CSEQ:
        raise SipParseError(f"CSeq: number {number} exceeds 2**31-1")
    return CSeq(number, match.group(2))


# ---------------------------------------------------------------------------------------------
# Headers and messages


class Headers:
    """Ordered header fields with case-insensitive names; compact forms expanded."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in fields or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace all fields named ``name`` by one, at the position of the first."""
        canon = canonical_name(name)
        key = canon.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for existing, old in self._fields:
            if existing.lower() == key:
                if not placed:
                    out.append((canon, value))
                    placed = True
            else:
                out.append((existing, old))
        if not placed:
            out.append((canon, value))
        self._fields = out

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [(n, v) for n, v in self._fields if n.lower() != key]

    def get(self, name: str) -> str | None:
        """The first field's raw value, or None."""
        key = canonical_name(name).lower()
        for existing, value in self._fields:
            if existing.lower() == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Raw values of every field line with this name (not split on commas)."""
        key = canonical_name(name).lower()
        return [value for existing, value in self._fields if existing.lower() == key]

    def values(self, name: str) -> list[str]:
        """Every element of a list header, whether comma-separated or repeated."""
        return [item for raw in self.get_all(name) for item in split_list(raw)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._fields] == [
            (n.lower(), v) for n, v in other._fields
        ]

    def __hash__(self) -> int:  # mutable: not hashable
        raise TypeError("Headers is unhashable")

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def copy(self) -> Headers:
        return Headers(list(self._fields))


class _MessageMixin:
    """Typed accessors shared by requests and responses."""

    headers: Headers
    body: bytes

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID").strip()

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self._required("CSeq"))

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @property
    def vias(self) -> list[Via]:
        return [parse_via(value) for value in self.headers.values("Via")]

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact entries; empty for a ``Contact: *`` wildcard (see ``is_wildcard_contact``)."""
        values = self.headers.values("Contact")
        if values == ["*"]:
            return []
        return [parse_name_addr(value) for value in values]

    @property
    def is_wildcard_contact(self) -> bool:
        return self.headers.values("Contact") == ["*"]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.strip() if value is not None else None

    def _serialize(self, start_line: str) -> bytes:
        headers = self.headers.copy()
        headers.set("Content-Length", str(len(self.body)))
        lines = [start_line] + [f"{name}: {value}" for name, value in headers]
        head = "\r\n".join(lines).encode(_ENCODING, _ERRORS)
        return head + _HEADER_END + self.body


@dataclass(eq=True, slots=True)
class SipRequest(_MessageMixin):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {self.version}")


@dataclass(eq=True, slots=True)
class SipResponse(_MessageMixin):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.version} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


# ---------------------------------------------------------------------------------------------
# Parsing


def _parse_start_line(line: str) -> SipRequest | SipResponse:
    if _VERSION_RE.match(line):
        status = _STATUS_LINE_RE.fullmatch(line)
        if status is None:
            raise SipParseError(f"bad status line {line!r}: expected 'SIP/2.0 <code> <reason>'")
        code = int(status.group(2))
        if len(status.group(2)) != 3 or not 100 <= code <= 699:
            raise SipParseError(f"bad status code {code} in {line!r}: must be 100-699")
        return SipResponse(code, status.group(3), version=status.group(1).upper())
    request = _REQUEST_LINE_RE.fullmatch(line)
    if request is None:
        raise SipParseError(f"bad request line {line!r}: expected '<METHOD> <URI> SIP/2.0'")
    uri = request.group(2)
    if ":" not in uri:
        raise SipParseError(f"bad Request-URI {uri!r}: no scheme")
    return SipRequest(request.group(1), uri, version=request.group(3).upper())


def _parse_head(head: bytes) -> SipRequest | SipResponse:
    """Parse the start line and headers (``head`` excludes the final empty line)."""
    text = head.decode(_ENCODING, _ERRORS)
    raw_lines = text.split("\r\n")
    if any("\n" in line or "\r" in line for line in raw_lines):
        raise SipParseError("bare CR or LF in message head: lines must end with CRLF")
    message = _parse_start_line(raw_lines[0])
    unfolded: list[str] = []
    for number, line in enumerate(raw_lines[1:], start=2):
        if line[:1] in (" ", "\t"):
            if not unfolded:
                raise SipParseError(f"line {number}: continuation line before any header")
            unfolded[-1] = unfolded[-1].rstrip(" \t") + " " + line.strip(" \t")
        elif not line:
            raise SipParseError(f"line {number}: empty line inside the headers")
        else:
            unfolded.append(line)
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _is_token(name):
            raise SipParseError(f"bad header line {line!r}: expected 'Name: value'")
        message.headers.add(name, value.strip(" \t"))
    return message


def _content_length(message: SipRequest | SipResponse) -> int | None:
    values = message.headers.get_all("Content-Length")
    if not values:
        return None
    if len({v.strip() for v in values}) != 1:
        raise SipParseError(f"conflicting Content-Length headers {values!r}")
    value = values[0].strip()
    if not value.isdigit():
        raise SipParseError(f"bad Content-Length {value!r}: must be a non-negative integer")
    return int(value)


def uri_user(uri: str) -> str | None:
    """The user part of a SIP URI (`sip:+3581234@host;transport=tcp` -> `+3581234`), None when
    it has none."""
    _, _, rest = uri.partition(":")
    if "@" not in rest:
        return None
    return rest.split("@", 1)[0].split(";", 1)[0] or None


def parse_datagram(data: bytes) -> SipRequest | SipResponse:
    """Parse one message received as a UDP datagram (§18.3)."""
    end = data.find(_HEADER_END)
    if end < 0:
        raise SipParseError("no empty line (CRLF CRLF) after the headers")
    message = _parse_head(data[:end])
    body = data[end + len(_HEADER_END) :]
    length = _content_length(message)
    if length is not None:
        if len(body) < length:
            raise SipParseError(f"body is {len(body)} bytes, shorter than Content-Length {length}")
        body = body[:length]
    message.body = body
    return message


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Alias of ``parse_datagram``: one complete message in a buffer."""
    return parse_datagram(data)


def parse_stream(
    buffer: bytes,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> tuple[SipRequest | SipResponse | None, bytes]:
    """Frame one message from a stream buffer (§7.5, §18.3).

    Returns ``(message, rest)`` when a whole message is buffered, else ``(None, buffer)`` with
    leading keep-alive CRLFs dropped. Raises ``SipParseError`` on a malformed message, a missing
    Content-Length, headers longer than ``max_header_bytes`` or a Content-Length above
    ``max_body_bytes``; the stream cannot be resynchronised after any of these.
    """
    start = 0
    while buffer.startswith(CRLF, start):
        start += len(CRLF)
    buffer = buffer[start:]
    end = buffer.find(_HEADER_END)
    if end < 0:
        if len(buffer) > max_header_bytes:
            raise SipParseError(f"headers exceed {max_header_bytes} bytes")
        return None, buffer
    message = _parse_head(buffer[:end])
    length = _content_length(message)
    if length is None:
        raise SipParseError("Content-Length is mandatory on stream transports")
    if length > max_body_bytes:
        raise SipParseError(f"Content-Length {length} exceeds {max_body_bytes} bytes")
    body_start = end + len(_HEADER_END)
    if len(buffer) - body_start < length:
        return None, buffer
    message.body = buffer[body_start : body_start + length]
    return message, buffer[body_start + length :]
