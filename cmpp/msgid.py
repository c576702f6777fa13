"""The 64-bit Msg_Id: time, ISMG code and sequence packed into bits (reference §13)."""

from __future__ import annotations

from typing import NamedTuple

_FIELDS = (  # name, shift, width
    ("month", 60, 4),
    ("day", 55, 5),
    ("hour", 50, 5),
    ("minute", 44, 6),
    ("second", 38, 6),
    ("gateway", 16, 22),
    ("sequence", 0, 16),
)


class MsgId(NamedTuple):
    """A Msg_Id laid out per the spec. Match receipts on the raw integer, never on these parts:
    some gateways fill Msg_Id their own way."""

    month: int
    day: int
    hour: int
    minute: int
    second: int
    gateway: int
    sequence: int

    def pack(self) -> int:
        """The unsigned 64-bit value; ValueError when a part does not fit its bits."""
        value = 0
        for (name, shift, width), part in zip(_FIELDS, self):
            if not 0 <= part < (1 << width):
                raise ValueError(f"MsgId.{name} {part} does not fit {width} bits")
            value |= part << shift
        return value

    @classmethod
    def unpack(cls, value: int) -> MsgId:
        """Split an unsigned 64-bit Msg_Id into its parts; ValueError outside 0..2**64-1."""
        if not 0 <= value < 1 << 64:
            raise ValueError(f"Msg_Id {value} is not an unsigned 64-bit value")
        return cls(*((value >> shift) & ((1 << width) - 1) for _, shift, width in _FIELDS))


def nth_of_mass_send(msg_id: int, k: int) -> int:
    """The Msg_Id of the k-th recipient (0-based) of a mass-send SUBMIT.

    The ISMG returns one Msg_Id for the range Msg_Id .. Msg_Id+(N-1); the +k applies to the
    16-bit sequence modulo 65536 and keeps the upper 48 bits (§13).
    """
    return (msg_id & ~0xFFFF) | ((msg_id + k) & 0xFFFF)
