"""Message text: Msg_Fmt encodings, the concatenation UDH, and splitting long messages (§14).

A segment carries at most 140 bytes. A long message is cut into segments that each start with
a User Data Header (``05 00 03 ref total n``, or ``06 08 04 refH refL total n`` with a 16-bit
reference), so 134 (or 133) bytes are left for text; UCS2 keeps to whole 2-byte units and
never splits a surrogate pair, GBK never splits a 2-byte character.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

SEGMENT_SIZE = 140


class MsgFmt(IntEnum):
    """Msg_Fmt values (§14.1). Real traffic also carries raw GSM DCS values such as 0xF6."""

    ASCII = 0
    SIM_WRITE = 3
    BINARY = 4
    UCS2 = 8
    GBK = 15


_CODECS = {MsgFmt.ASCII: "ascii", MsgFmt.UCS2: "utf-16-be", MsgFmt.GBK: "gbk"}
_ASCII, _UCS2 = MsgFmt.ASCII, MsgFmt.UCS2
_DECODERS = {MsgFmt.ASCII: "latin-1", MsgFmt.UCS2: "utf-16-be", MsgFmt.GBK: "gb18030"}


def encode_text(text: str, msg_fmt: int | None = None) -> tuple[int, bytes]:
    """Encode ``text`` for Msg_Content and return ``(msg_fmt, bytes)``.

    With no ``msg_fmt``: ASCII (0) when every character is ASCII, UCS2 (8, UTF-16BE without a
    BOM) otherwise. GBK (15) only on request. Raises ValueError when ``text`` cannot be written
    in the format asked for, or for a format that does not carry text.
    """
    if msg_fmt is None:           # the usual case, without the enum's lookups (per SUBMIT)
        return (_ASCII, text.encode("ascii")) if text.isascii() else \
            (_UCS2, text.encode("utf-16-be"))
    codec = _CODECS.get(msg_fmt)
    if codec is None:
        raise ValueError(f"Msg_Fmt {msg_fmt} does not carry text; use 0, 8 or 15")
    try:
        return MsgFmt(msg_fmt), text.encode(codec)
    except UnicodeEncodeError as error:
        raise ValueError(f"{text[error.start:error.end]!r} cannot be written in "
                         f"Msg_Fmt {msg_fmt} ({codec})") from None


def decode_text(content: bytes, msg_fmt: int) -> str | None:
    """The text in ``content``, or None for a binary format. Never raises: bytes that do not
    decode become U+FFFD, because received text must not be lost to one bad byte."""
    codec = _DECODERS.get(msg_fmt)
    if codec is None:
        return None
    return content.decode(codec, errors="replace")


# ----------------------------------------------------------------------------- UDH

class Concatenation(NamedTuple):
    """The concatenation element of a UDH: which part of which long message a segment is."""

    reference: int
    total: int
    number: int
    reference_bits: int = 8


def udh_concatenation(concat: Concatenation) -> bytes:
    """The 6-byte (8-bit reference) or 7-byte (16-bit reference) UDH for one segment."""
    if concat.reference_bits == 16:
        return bytes((6, 0x08, 4, concat.reference >> 8, concat.reference & 0xFF,
                      concat.total, concat.number))
    return bytes((5, 0x00, 3, concat.reference, concat.total, concat.number))


def split_udh(content: bytes, tp_udhi: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split Msg_Content into its UDH elements ``[(iei, data)]`` and the payload after them.

    A UDH is present when ``tp_udhi & 0x41`` (some gateways send the esm_class bit 0x40).
    A header that runs past the content is not a header: the content is all payload.
    """
    if not tp_udhi & 0x41 or not content:
        return [], content
    end = 1 + content[0]
    if end > len(content):
        return [], content
    elements, i = [], 1
    while i + 2 <= end:
        iei, size = content[i], content[i + 1]
        if i + 2 + size > end:
            return [], content
        elements.append((iei, content[i + 2:i + 2 + size]))
        i += 2 + size
    return elements, content[end:]


def find_concatenation(elements: list[tuple[int, bytes]]) -> Concatenation | None:
    """The concatenation element among UDH elements (IEI 0x00 or 0x08), if any."""
    for iei, data in elements:
        if iei == 0x00 and len(data) == 3:
            return Concatenation(data[0], data[1], data[2], 8)
        if iei == 0x08 and len(data) == 4:
            return Concatenation((data[0] << 8) | data[1], data[2], data[3], 16)
    return None


# ----------------------------------------------------------------------------- splitting

class Segment(NamedTuple):
    """One SUBMIT's worth of a message: pass these fields on to ``Submit``."""

    msg_fmt: int
    tp_udhi: int
    pk_total: int
    pk_number: int
    msg_content: bytes


def split_text(
    text: str,
    msg_fmt: int | None = None,
    *,
    reference: int = 0,
    reference_bits: int = 8,
    max_parts: int = 255,
    reserve_first: int = 0,
) -> list[Segment]:
    """Cut ``text`` into the segments of one message.

    A text that fits one segment gets no UDH. Otherwise every segment carries a concatenation
    UDH with ``reference`` (8- or 16-bit), the total and its number, and Pk_total/Pk_number
    are set to match. ``reserve_first`` bytes are kept free in the first segment for a
    signature the SMS center adds. Raises ValueError when the text needs more than
    ``max_parts`` segments, or when an argument is out of range.
    """
    if reference_bits not in (8, 16):
        raise ValueError("reference_bits must be 8 or 16")
    if not 0 <= reference < (1 << reference_bits):
        raise ValueError(f"reference {reference} does not fit {reference_bits} bits")
    if not 1 <= max_parts <= 255:
        raise ValueError("max_parts must be 1..255")
    msg_fmt, data = encode_text(text, msg_fmt)
    if not 0 <= reserve_first < SEGMENT_SIZE - 8:
        raise ValueError(f"reserve_first must be 0..{SEGMENT_SIZE - 9} bytes")
    if len(data) <= SEGMENT_SIZE - reserve_first:
        return [Segment(msg_fmt, 0, 1, 1, data)]
    room = SEGMENT_SIZE - (6 if reference_bits == 8 else 7)
    payloads = _cut(text, msg_fmt, room, room - reserve_first)
    if len(payloads) > max_parts:
        raise ValueError(f"text needs {len(payloads)} segments, at most {max_parts} allowed")
    total = len(payloads)
    return [
        Segment(msg_fmt, 1, total, number,
                udh_concatenation(Concatenation(reference, total, number, reference_bits)) + part)
        for number, part in enumerate(payloads, 1)
    ]


def _cut(text: str, msg_fmt: int, room: int, first_room: int) -> list[bytes]:
    """Cut the encoded text at character boundaries into pieces of at most ``room`` bytes."""
    if msg_fmt == MsgFmt.UCS2:          # whole 2-byte units
        room, first_room = room & ~1, first_room & ~1
    codec = _CODECS[msg_fmt]
    pieces, current, size, limit = [], [], 0, first_room
    for char in text:
        encoded = char.encode(codec)    # 4 bytes for a surrogate pair: never split
        if size + len(encoded) > limit:
            pieces.append(b"".join(current))
            current, size, limit = [], 0, room
        current.append(encoded)
        size += len(encoded)
    pieces.append(b"".join(current))
    return pieces
