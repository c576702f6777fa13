"""The codec's errors: one exception for bad bytes, one for a peer that breaks the rules; and
the session's, for a command it cannot carry out."""

from __future__ import annotations

import struct

from construct import ConstructError

# What a compiled layout raises on bad bytes; the interpreted layout then names the field.
PARSE_ERRORS = (struct.error, ConstructError, UnicodeDecodeError, IndexError)


class CodecError(ValueError):
    """Bytes that are not a valid CMPP 2.0 PDU.

    The only exception that decoding raises. ``field`` names the wire field that failed (None
    when the frame as a whole is wrong), ``reason`` says why. ``command_id`` and
    ``sequence_id`` are set whenever the 12-byte header could be read, so that a session can
    still answer the request. ``fatal`` is true when the byte stream can no longer be framed
    (a bad Total_Length): nothing after it can be trusted, and the connection must end.
    ``frame`` holds the bytes of a well-framed PDU that failed inside, when ``FrameDecoder``
    raised the error, so that a caller can keep what the peer sent.
    """

    frame: bytes | None = None

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        command_id: int | None = None,
        sequence_id: int | None = None,
        fatal: bool = False,
    ) -> None:
        self.reason = reason
        self.field = field
        self.command_id = command_id
        self.sequence_id = sequence_id
        self.fatal = fatal
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = []
        if self.command_id is not None:
            where.append(f"command 0x{self.command_id:08X}")
        if self.sequence_id is not None:
            where.append(f"sequence {self.sequence_id}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class ProtocolError(Exception):
    """A peer that breaks the CMPP rules: a PDU that is valid bytes but wrong in this state."""


class SessionError(RuntimeError):
    """A command that the session cannot carry out in its state (a bug in the caller)."""


class WindowFull(SessionError):
    """``window`` requests already wait for responses: wait for one to be answered."""


def failed_field(error: ConstructError) -> str | None:
    """The name of the innermost field in a construct error's path (None if it has none)."""
    path = getattr(error, "path", None) or ""
    parts = [p.strip() for p in path.split("->") if p.strip() and not p.strip().startswith("(")]
    return parts[-1] if parts else None


def failure_reason(error: ConstructError) -> str:
    """A construct error's message without its path line."""
    message = str(error)
    for line in message.splitlines():
        if line.startswith("Error in path"):
            continue
        return line
    return message
