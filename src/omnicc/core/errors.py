"""Domain exceptions of the core. The API layer maps them to RFC 9457 problem details."""

from __future__ import annotations


class OmniccError(Exception):
    """Base class of every error the domain raises on purpose."""


class NotFound(OmniccError):
    """A referenced agent, queue, task, offer or policy does not exist."""


class Conflict(OmniccError):
    """The command does not fit the current state (e.g. accepting an offer that was rescinded)."""


class InvalidConfiguration(OmniccError):
    """A configuration value is out of range or inconsistent."""


class ExpressionError(InvalidConfiguration):
    """An eligibility expression could not be parsed; names the position of the problem."""

    def __init__(self, message: str, source: str, position: int) -> None:
        self.source = source
        self.position = position
        self.reason = message
        pointer = " " * position + "^"
        super().__init__(
            f"{message} at position {position} in expression:\n  {source}\n  {pointer}"
        )
