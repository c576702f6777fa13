"""Bytes to PDUs and back: ``encode``, ``decode`` and the stream ``FrameDecoder``.

Every PDU runs through its compiled layout (``layout.Layout``). When that fast path fails,
the interpreted construct layout runs once more on the same bytes or values to name the
field and the reason; decoding then raises ``CodecError``, encoding ``ValueError``.

The frames of every message have shorter paths still, each giving exactly what the layouts
give (tests/cmpp/test_fast_paths.py) and leaving anything unusual to them: a SUBMIT built from
its sender's ``SubmitTemplate``, a DELIVER carrying a 60-byte report read in one ``struct``
call, a SUBMIT_RESP or DELIVER_RESP read in one, ``encode_deliver_resp`` and
``encode_submit_resp``; and on the server's side (``fastpath``) a SUBMIT read with two and a
report's DELIVER built with one.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from io import BytesIO

from construct import ConstructError

from .errors import PARSE_ERRORS, CodecError, failed_field, failure_reason
from .fastpath import ENCODED_BODY, decode_submit_frame
from .pdus import (
    PDU_CLASSES,
    ActiveTestResp,
    CommandId,
    Deliver,
    DeliverResp,
    Pdu,
    Submit,
    SubmitResp,
)
from .report import StatusReport, decode_report

DEFAULT_MAX_LENGTH = 4096
_HEADER = struct.Struct(">III")
_LENGTH = struct.Struct(">I")


class _Codec:
    """One PDU class's compiled parse and build functions."""

    __slots__ = ("cls", "layout", "parse", "build", "finish")

    def __init__(self, cls: type[Pdu]) -> None:
        compiled = cls.layout.compile()
        self.cls = cls
        self.layout = cls.layout
        self.parse = compiled.parse_from if cls.layout.subcons else None
        self.build = compiled.build_bytes
        self.finish = _deliver_report if cls is Deliver else None


_new = object.__new__
_set = object.__setattr__


# ----------------------------------------------------------------------------- decoding

def decode(frame: bytes) -> Pdu:
    """Decode one whole frame (header and body) into its PDU.

    Raises ``CodecError`` naming the field and the reason for anything else: a frame whose
    Total_Length disagrees with its size, an unknown Command_Id (the error carries the id and
    the sequence so that a session can answer), a body that does not fit the 2.0 layout
    (saying so when it fits the CMPP 3.0 one instead), or bytes left over.
    """
    return _decode(frame, 0, len(frame))


def _decode(data: bytes, start: int, end: int) -> Pdu:
    """Decode the frame ``data[start:end]`` without copying it out first."""
    try:
        total_length, command_id, sequence_id = _HEADER.unpack_from(data, start)
    except struct.error:
        raise CodecError(f"frame of {end - start} bytes is shorter than the 12-byte header",
                         field="Total_Length") from None
    entry = _DECODERS.get(command_id)
    if entry is None or total_length != end - start:
        raise _header_error(end - start, total_length, command_id, sequence_id)
    if total_length == _REPORT_FRAME_SIZE and command_id == _DELIVER:
        pdu = _decode_report_frame(data, start, sequence_id)
        if pdu is not None:
            return pdu
    elif command_id == _SUBMIT:
        pdu = decode_submit_frame(data, start, end, sequence_id)
        if pdu is not None:
            return pdu
    elif total_length == 21 and command_id in _ANSWER_CLASSES:
        msg_id, result = _ANSWER.unpack_from(data, start + 12)
        pdu = _new(_ANSWER_CLASSES[command_id])
        _set(pdu, "__dict__", {"msg_id": msg_id, "result": result, "sequence_id": sequence_id})
        return pdu
    cls, parse, finish = entry
    if parse is None:
        if total_length != 12:
            return _decode_tolerated(_CODECS[command_id], data[start:end], command_id, sequence_id)
        values = {"sequence_id": sequence_id}
    else:
        try:
            values, stop = parse(data, start + 12)
        except PARSE_ERRORS:
            stop = -1
        if stop != end:     # a read past the frame shows here too
            return _decode_tolerated(_CODECS[command_id], data[start:end], command_id, sequence_id)
        values["sequence_id"] = sequence_id
        if finish is not None:
            finish(values, command_id, sequence_id)
    pdu = _new(cls)
    _set(pdu, "__dict__", values)
    return pdu


def _header_error(size: int, total_length: int, command_id: int, sequence_id: int):
    if total_length != size:
        return CodecError(f"Total_Length says {total_length} bytes but the frame has {size}",
                          field="Total_Length", command_id=command_id, sequence_id=sequence_id)
    return CodecError("unknown Command_Id", field="Command_Id",
                      command_id=command_id, sequence_id=sequence_id)


def _deliver_report(values: dict, command_id: int, sequence_id: int) -> None:
    """Parse a DELIVER's status report into ``values["report"]`` (None for MO)."""
    if values["registered_delivery"] != 1:
        values["report"] = None
        return
    try:
        values["report"] = decode_report(values["msg_content"])
    except CodecError as error:
        raise CodecError(error.reason, field=f"Msg_Content.{error.field}",
                         command_id=command_id, sequence_id=sequence_id) from None


# A DELIVER carrying a 60-byte status report: the frame that every message brings back. Its
# fields, the report's and Reserve are read in one struct call (the layouts' own order, §10).
_REPORT_FRAME = struct.Struct(">Q21s10sBBB21sBB" "Q7s10s10s21sI" "8s")
_REPORT_FRAME_SIZE = 12 + _REPORT_FRAME.size
_DELIVER, _SUBMIT = int(CommandId.DELIVER), int(CommandId.SUBMIT)
# SUBMIT_RESP and DELIVER_RESP: Msg_Id and Result (§9, §11), the answer to every message.
_ANSWER = struct.Struct(">QB")
_ANSWER_CLASSES = {int(CommandId.SUBMIT_RESP): SubmitResp,
                   int(CommandId.DELIVER_RESP): DeliverResp}


def _decode_report_frame(data: bytes, start: int, sequence_id: int) -> Deliver | None:
    """The DELIVER in ``data[start:]`` (a whole frame of ``_REPORT_FRAME_SIZE`` bytes) if it
    is a well-formed report: exactly what the layouts give. None for anything else (MO, a
    non-ASCII text field), which the layouts then decode or explain."""
    (msg_id, dest_id, service_id, tp_pid, tp_udhi, msg_fmt, src_terminal_id,
     registered_delivery, msg_length, report_msg_id, stat, submit_time, done_time,
     dest_terminal_id, smsc_sequence, reserve) = _REPORT_FRAME.unpack_from(data, start + 12)
    if registered_delivery != 1 or msg_length != 60:
        return None
    try:      # a text field is cut at its first NUL (§3), as layout.Text does
        report_values = {
            "msg_id": report_msg_id, "stat": stat.partition(b"\0")[0].decode("ascii"),
            "submit_time": submit_time.partition(b"\0")[0].decode("ascii"),
            "done_time": done_time.partition(b"\0")[0].decode("ascii"),
            "dest_terminal_id": dest_terminal_id.partition(b"\0")[0].decode("ascii"),
            "smsc_sequence": smsc_sequence}
        values = {
            "msg_id": msg_id, "dest_id": dest_id.partition(b"\0")[0].decode("ascii"),
            "service_id": service_id.partition(b"\0")[0].decode("ascii"),
            "tp_pid": tp_pid, "tp_udhi": tp_udhi, "msg_fmt": msg_fmt,
            "src_terminal_id": src_terminal_id.partition(b"\0")[0].decode("ascii"),
            "registered_delivery": 1, "msg_content": data[start + 77:start + 137],
            "reserve": reserve.partition(b"\0")[0].decode("ascii"), "sequence_id": sequence_id}
    except UnicodeDecodeError:
        return None
    report = _new(StatusReport)
    _set(report, "__dict__", report_values)
    values["report"] = report
    pdu = _new(Deliver)
    _set(pdu, "__dict__", values)
    return pdu


def _decode_tolerated(codec: _Codec, frame: bytes, command_id: int, sequence_id: int) -> Pdu:
    """The slow path: accept what real gateways send, otherwise explain the failure."""
    body = frame[12:]
    if codec.cls is ActiveTestResp and not body:
        return ActiveTestResp(sequence_id=sequence_id)     # 12-byte ACTIVE_TEST_RESP (§7)
    raise _explain(codec, body, command_id, sequence_id)


def _explain(codec: _Codec, body: bytes, command_id: int, sequence_id: int) -> CodecError:
    name = CommandId(command_id).name
    cmpp3 = _cmpp3_layout(command_id, body)
    if cmpp3:
        return CodecError(f"{len(body)}-byte {name} body fits the CMPP 3.0 layout ({cmpp3}), "
                          "not CMPP 2.0", command_id=command_id, sequence_id=sequence_id)
    stream = BytesIO(body)
    try:
        codec.layout.parse_stream(stream)
    except ConstructError as error:
        return CodecError(failure_reason(error), field=failed_field(error), command_id=command_id,
                          sequence_id=sequence_id)
    return CodecError(f"{len(body) - stream.tell()} bytes after the last field of {name}",
                      command_id=command_id, sequence_id=sequence_id)


# The 3.0 layouts differ from 2.0 in sizes that a body length gives away (§1, §6.3-§12).
_CMPP3_FIXED = {
    CommandId.CONNECT_RESP: (21, "4-byte Status"),
    CommandId.SUBMIT_RESP: (12, "4-byte Result"),
    CommandId.DELIVER_RESP: (12, "4-byte Result"),
    CommandId.CANCEL_RESP: (4, "4-byte Success_Id"),
}


def _cmpp3_layout(command_id: int, body: bytes) -> str | None:
    """Describe the CMPP 3.0 layout that ``body`` fits exactly, or None."""
    fixed = _CMPP3_FIXED.get(command_id)
    if fixed:
        return fixed[1] if len(body) == fixed[0] else None
    if command_id == CommandId.SUBMIT and len(body) > 128:
        count = body[128]
        if len(body) > 130 + 32 * count:
            length = body[130 + 32 * count]
            if len(body) == 151 + 32 * count + length:
                return "Total_Length = 163 + 32 x DestUsr_tl + Msg_Length"
    if command_id == CommandId.DELIVER and len(body) > 76:
        if len(body) == 97 + body[76]:
            return "Total_Length = 109 + Msg_Length"
    return None


# ----------------------------------------------------------------------------- encoding

def encode(pdu: Pdu) -> bytes:
    """Encode a PDU into one frame, header included.

    Raises ``ValueError`` naming the field when a value does not fit (too long, not ASCII,
    out of range, more than 99 destinations, content over 140 bytes or 159 for ASCII); no
    bytes are returned in that case.
    """
    codec = _CODECS[pdu.command_id]
    values = pdu.__dict__
    body = values.get(_BODY)
    try:
        if body is None:
            body = codec.build(values)
        return _HEADER.pack(12 + len(body), pdu.command_id, values["sequence_id"]) + body
    except Exception as error:  # noqa: BLE001 - every failure is explained by _encode_error
        raise _encode_error(pdu, codec, error) from None


_BODY = ENCODED_BODY     # a prepared PDU's body, kept beside its fields (not a field)


def prepare(pdu: Pdu) -> Pdu:
    """The same PDU with its body encoded now and kept, for one that is sent many times under
    different Sequence_Ids (a load tool's messages): ``encode`` of it, and of its copies by
    ``with_sequence``, then only packs the 12-byte header. The bytes are exactly those of
    ``encode``, and so is the ``ValueError`` for a value that does not fit. It is equal to
    ``pdu`` (the kept body is not a field); a copy made with other values is not prepared.
    """
    body = encode(pdu)[12:]
    prepared = pdu.with_sequence(pdu.sequence_id)
    prepared.__dict__[_BODY] = body
    return prepared


def encode_deliver_resp(sequence_id: int, msg_id: int, result: int = 0) -> bytes:
    """``encode(DeliverResp(sequence_id, msg_id, result))`` without building the PDU: one
    ``struct`` call for the answer to every DELIVER. The same bytes, and the same
    ``ValueError`` for a value that does not fit."""
    try:
        return _DELIVER_RESP.pack(21, 0x80000005, sequence_id, msg_id, result)
    except struct.error:
        return encode(DeliverResp(sequence_id, msg_id, result))


def encode_submit_resp(sequence_id: int, msg_id: int, result: int = 0) -> bytes:
    """``encode(SubmitResp(sequence_id, msg_id, result))`` without the layout: one ``struct``
    call for the answer to every SUBMIT. The same bytes, and the same ``ValueError`` for a
    value that does not fit."""
    try:
        return _DELIVER_RESP.pack(21, 0x80000004, sequence_id, msg_id, result)
    except struct.error:
        return encode(SubmitResp(sequence_id, msg_id, result))


_DELIVER_RESP = struct.Struct(">IIIQB")     # SUBMIT_RESP's layout too


class SubmitTemplate:
    """The SUBMITs of one sender, which share every field but the message's own: a template
    encodes those shared fields once, and ``submit`` packs only the message's (Pk_total,
    Pk_number, Msg_level, TP_udhi, Msg_Fmt, the destinations and Msg_Content) into a
    prepared ``Submit`` (see ``prepare``). The PDU, and its bytes under any Sequence_Id, are
    exactly those of ``Submit(**shared, **own)``; so is the ``ValueError`` that encoding raises
    for a value that does not fit (such a SUBMIT is returned unprepared, and ``encode`` says
    what is wrong). ``base`` holds the shared fields (its destinations and content are not
    used); when one of them does not fit, every SUBMIT is unprepared.
    """

    __slots__ = ("_shared", "_values")

    def __init__(self, base: Submit) -> None:
        self._values = {k: v for k, v in base.__dict__.items() if k != _BODY}
        try:
            body = encode(replace(base, dest_terminal_ids=("",), msg_content=b""))[12:]
        except ValueError:
            self._shared = None       # every SUBMIT unprepared: encode() says what is wrong
            return
        # Msg_Id | Pk_total Pk_number Registered_Delivery Msg_level | Service_Id .. TP_pid |
        # TP_udhi Msg_Fmt | Msg_src .. Src_Id | DestUsr_tl ... | Reserve (§8).
        self._shared = (body[0:8], body[10], body[12:45], body[47:116], body[-8:])

    def submit(self, dest_terminal_ids: tuple[str, ...], msg_content: bytes, *, msg_fmt: int = 0,
               tp_udhi: int = 0, pk_total: int = 1, pk_number: int = 1,
               msg_level: int = 0) -> Submit:
        """This sender's SUBMIT of one message's segment, its body encoded."""
        values = self._values.copy()
        values["pk_total"], values["pk_number"], values["msg_level"] = pk_total, pk_number, msg_level
        values["tp_udhi"], values["msg_fmt"] = tp_udhi, msg_fmt
        values["dest_terminal_ids"], values["msg_content"] = dest_terminal_ids, msg_content
        try:
            values[_BODY] = self._body(dest_terminal_ids, msg_content, msg_fmt, tp_udhi, pk_total,
                                       pk_number, msg_level)
        except (_Misfit, AttributeError, TypeError, UnicodeError, struct.error):
            pass                  # unprepared: encode() checks it field by field
        pdu = _new(Submit)
        _set(pdu, "__dict__", values)
        return pdu

    def _body(self, dests, content, msg_fmt, tp_udhi, pk_total, pk_number, msg_level) -> bytes:
        """The encoded body; raises when a value is not of the usual kind or does not fit."""
        if type(dests) is not tuple or type(content) is not bytes or not 1 <= len(dests) <= 99 \
                or self._shared is None:
            raise _Misfit
        if len(content) > 140 and not (len(content) <= 159 and msg_fmt == 0):
            raise _Misfit
        if len(dests) == 1:
            destinations = dests[0].encode("ascii")
            if len(destinations) > 21:
                raise _Misfit
            destinations = destinations.ljust(21, b"\0")
        else:
            encoded = [d.encode("ascii") for d in dests]
            if any(len(d) > 21 for d in encoded):
                raise _Misfit
            destinations = b"".join([d.ljust(21, b"\0") for d in encoded])
        msg_id, registered_delivery, service_to_pid, src_to_id, reserve = self._shared
        return _SUBMIT_HEAD.pack(msg_id, pk_total, pk_number, registered_delivery, msg_level,
                          service_to_pid, tp_udhi, msg_fmt, src_to_id, len(dests)) \
            + destinations + _BYTE[len(content)] + content + reserve


# A SUBMIT body up to DestUsr_tl: Msg_Id, Pk_total .. Msg_level, Service_Id .. TP_pid,
# TP_udhi, Msg_Fmt, Msg_src .. Src_Id, DestUsr_tl (§8).
_SUBMIT_HEAD = struct.Struct(">8s4B33s2B69sB")


class _Misfit(Exception):
    """A value SubmitTemplate leaves to encode() to explain."""


_BYTE = [bytes((n,)) for n in range(256)]


def _encode_error(pdu: Pdu, codec: _Codec, original: Exception) -> ValueError:
    name = type(pdu).__name__
    sequence_id = pdu.__dict__.get("sequence_id")
    if not isinstance(sequence_id, int) or not 0 <= sequence_id <= 0xFFFFFFFF:
        return ValueError(f"{name}.sequence_id: {sequence_id!r} does not fit 4 bytes")
    try:
        codec.layout.build(dict(pdu.__dict__))
    except ConstructError as error:
        return ValueError(f"{name}.{failed_field(error)}: {failure_reason(error)}")
    except Exception as error:  # noqa: BLE001 - e.g. TypeError for bytes given as text
        return ValueError(f"{name}: {error}")
    return ValueError(f"{name}: {original!r}")


# ----------------------------------------------------------------------------- streams

class FrameDecoder:
    """Turns a byte stream, split anywhere, into whole PDUs.

    ``feed(data)`` returns every PDU completed so far, in stream order. A Total_Length outside
    [12, max_length] is refused as soon as its 4 bytes arrive, before any body is buffered;
    that error is fatal (``CodecError.fatal``) and every later ``feed`` raises it again. A frame
    that is well framed but bad inside (an unknown Command_Id, a bad field) is consumed and
    raised as a ``CodecError``; the stream goes on after it. Nothing is lost: when a bad frame
    follows good ones in the same call, the good PDUs are returned and the error is raised by
    the next call to ``feed`` (``feed(b"")`` will do).
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 12:
            raise ValueError("max_length must be at least 12")
        self.max_length = max_length
        self._buffer = bytearray()
        self._pending: CodecError | None = None
        self._fatal: CodecError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Pdu]:
        if self._fatal is not None:
            raise self._fatal
        buffer = self._buffer
        buffer += data
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error
        end = self._complete_frames()
        if not end:
            return []
        whole = bytes(buffer) if end == len(buffer) else bytes(buffer[:end])
        pdus: list[Pdu] = []
        start = 0
        try:
            while start < end:
                stop = start + _LENGTH.unpack_from(whole, start)[0]
                try:
                    pdus.append(_decode(whole, start, stop))
                except CodecError as error:
                    error.frame = whole[start:stop]
                    raise
                finally:
                    start = stop
        except CodecError as error:
            if not pdus:
                raise
            self._pending = error
        finally:
            del buffer[:start]
        return pdus

    def _complete_frames(self) -> int:
        """The length of the run of whole frames at the head of the buffer. A Total_Length out
        of range stops the run; it becomes the fatal error, raised at once when no whole frame
        comes before it and by the next ``feed`` otherwise."""
        buffer, at = self._buffer, 0
        while len(buffer) - at >= 4:
            total = _LENGTH.unpack_from(buffer, at)[0]
            if not 12 <= total <= self.max_length:
                self._fatal = self._bad_length(buffer[at:], total)
                if not at:
                    raise self._fatal
                self._pending = self._fatal
                break
            if len(buffer) - at < total:
                break
            at += total
        return at

    def _bad_length(self, head: bytearray, total: int) -> CodecError:
        command_id = sequence_id = None
        if len(head) >= 12:
            _, command_id, sequence_id = _HEADER.unpack_from(head)
        return CodecError(f"Total_Length {total} is outside [12, {self.max_length}]",
                          field="Total_Length", command_id=command_id,
                          sequence_id=sequence_id, fatal=True)


# ----------------------------------------------------------------------------- tables

_CODECS: dict[int, _Codec] = {cls.command_id: _Codec(cls) for cls in PDU_CLASSES}
_DECODERS = {command_id: (c.cls, c.parse, c.finish) for command_id, c in _CODECS.items()}
