"""What a message looks like on a handset: the sender, the text with its signature, and how
many SMS it takes, counted by ``cmpp.split_text`` with the channel's own limits (its
``max_parts``, and the room its center keeps for a signature of its own)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from markupsafe import Markup, escape

import cmpp

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Handset:
    sender: str
    text: str
    parts: int                  # 0 when the text cannot be sent (error says why)
    characters: int
    error: str = ""

    @property
    def marked(self) -> Markup:
        """The text, escaped, with each {{parameter}} marked."""
        return Markup(PLACEHOLDER.sub(lambda m: Markup("<mark>{}</mark>").format(m.group(0)),
                                      str(escape(self.text))))


def signed(signature: str, text: str) -> str:
    """The text as sent: the signature in 【】 in front (none when empty)."""
    return f"【{signature}】{text}" if signature else text


def preview(text: str, channel, code_length: int = 6) -> Handset:
    """``text`` (signature included) as the handset of ``channel`` (a ChannelConfig, or None)
    shows it. Parameters still in it count as written, but ``{{code}}`` counts as
    ``code_length`` digits."""
    counted = PLACEHOLDER.sub(lambda m: "0" * code_length if m.group(1) == "code"
                              else m.group(0), text)
    reserve = channel.signature_room if channel is not None else 0
    try:
        parts = len(cmpp.split_text(counted, reserve_first=reserve,
                                    max_parts=channel.max_parts if channel else 255))
        error = ""
    except ValueError as problem:
        parts, error = 0, str(problem)
    sender = channel.access_number if channel is not None else ""
    return Handset(sender, text, parts, len(counted), error)
