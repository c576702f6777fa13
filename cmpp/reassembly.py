"""Long-message reassembly, sans-IO: segments in, whole messages out (reference §14.3).

Segments are keyed by (source, destination, reference, total) from the UDH, never by
Pk_total/Pk_number, which real senders leave at 1/1. They may come in any order and over any
connection; duplicates are ignored, and a message still incomplete after ``timeout`` seconds is
reported by ``expire`` with the parts that did arrive, not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pdus import Deliver, Submit
from .text import decode_text, find_concatenation, split_udh


@dataclass(frozen=True)
class Message:
    """A reassembled message (or the parts of one that never completed).

    ``parts`` are the received PDUs in part order; ``payload`` is their content without UDHs;
    ``text`` is the decoded text, None for binary content. ``missing`` lists the part numbers
    that never came (empty when ``complete``).
    """

    source: str
    destination: str
    parts: tuple
    payload: bytes
    text: str | None
    complete: bool = True
    missing: tuple[int, ...] = ()
    first_seen: float = 0.0


@dataclass
class _Pending:
    total: int
    first_seen: float
    parts: dict  # number -> (pdu, payload)


def _addresses(pdu) -> tuple[str, str]:
    if isinstance(pdu, Deliver):
        return pdu.src_terminal_id, pdu.dest_id
    if isinstance(pdu, Submit):
        return pdu.src_id, ",".join(pdu.dest_terminal_ids)
    raise TypeError(f"cannot reassemble {type(pdu).__name__}")


class Reassembler:
    """Joins the segments of long messages; time is passed in, in seconds."""

    def __init__(self, timeout: float = 7200.0) -> None:
        self.timeout = timeout
        self._pending: dict[tuple, _Pending] = {}
        self._done: dict[tuple, tuple[float, dict]] = {}  # recently completed, for duplicates

    def feed(self, pdu: Deliver | Submit, now: float) -> list[Message]:
        """Take one received segment; return the message it completes, if any.

        A PDU without a concatenation UDH, or with one that makes no sense (part 0, part beyond
        the total), is a whole message by itself and is returned at once.
        """
        source, destination = _addresses(pdu)
        elements, payload = split_udh(pdu.msg_content, pdu.tp_udhi)
        concat = find_concatenation(elements)
        if concat is None or concat.total < 2 or not 1 <= concat.number <= concat.total:
            return [Message(source, destination, (pdu,), payload, decode_text(payload, pdu.msg_fmt),
                            first_seen=now)]
        key = (source, destination, concat.reference_bits, concat.reference, concat.total)
        if self._is_duplicate(key, concat.number, payload):
            return []
        pending = self._pending.setdefault(key, _Pending(concat.total, now, {}))
        pending.parts.setdefault(concat.number, (pdu, payload))
        if len(pending.parts) < pending.total:
            return []
        del self._pending[key]
        self._done[key] = (now, pending.parts)
        return [_message(source, destination, pending, complete=True)]

    def _is_duplicate(self, key: tuple, number: int, payload: bytes) -> bool:
        done = self._done.get(key)
        if done is None or number not in done[1]:
            return False
        return done[1][number][1] == payload

    def expire(self, now: float) -> list[Message]:
        """Report (and forget) every message still incomplete ``timeout`` seconds after its
        first part; forget completed ones once a duplicate of them could no longer arrive."""
        expired = []
        for key, pending in list(self._pending.items()):
            if now - pending.first_seen >= self.timeout:
                del self._pending[key]
                expired.append(_message(key[0], key[1], pending, complete=False))
        for key, (finished, _) in list(self._done.items()):
            if now - finished >= self.timeout:
                del self._done[key]
        return expired

    def next_expiry(self) -> float | None:
        """When ``expire`` next has something to do, or None."""
        times = [p.first_seen for p in self._pending.values()]
        times += [finished for finished, _ in self._done.values()]
        return min(times) + self.timeout if times else None

    @property
    def pending(self) -> int:
        """Messages waiting for parts."""
        return len(self._pending)


def _message(source: str, destination: str, pending: _Pending, complete: bool) -> Message:
    numbers = sorted(pending.parts)
    pdus = tuple(pending.parts[n][0] for n in numbers)
    payloads = [pending.parts[n][1] for n in numbers]
    payload = b"".join(payloads)
    formats = {pdu.msg_fmt for pdu in pdus}
    if len(formats) == 1:
        text = decode_text(payload, formats.pop())
    else:   # each segment carries its own Msg_Fmt (SMSGate's 4-part capture mixes 8 and 0)
        texts = [decode_text(p, pdu.msg_fmt) for pdu, p in zip(pdus, payloads)]
        text = None if any(t is None for t in texts) else "".join(texts)
    missing = tuple(n for n in range(1, pending.total + 1) if n not in pending.parts)
    return Message(source, destination, pdus, payload, text, complete, missing,
                   pending.first_seen)
