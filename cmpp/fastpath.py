"""The server side's shortest paths for the frames of every message: a SUBMIT read with two
``struct`` calls, and a status report's DELIVER built with one.

Each gives exactly what the wire layouts give (tests/cmpp/test_server_fast_paths.py holds
them to the construct definitions) and leaves anything unusual to them:
``decode_submit_frame`` returns None for a SUBMIT it does not take (the layouts then decode it
or explain why not), and ``report_deliver`` builds the plain ``Deliver`` for values it does
not take (which raises, or not, as the plain one does). The client side's own are in
``codec``.
"""

from __future__ import annotations

import struct

from .pdus import Deliver, Submit
from .report import StatusReport

ENCODED_BODY = "_encoded_body"   # a prepared PDU's body, kept beside its fields (codec.prepare)

_new = object.__new__
_set = object.__setattr__

# A SUBMIT body up to DestUsr_tl, in the layout's order (§8): Msg_Id, Pk_total, Pk_number,
# Registered_Delivery, Msg_level | Service_Id, Fee_UserType, Fee_terminal_Id | TP_pId, TP_udhi,
# Msg_Fmt | Msg_src, FeeType, FeeCode, ValId_Time, At_Time, Src_Id | DestUsr_tl.
_SUBMIT_HEAD = struct.Struct(">Q4B" "32x" "3B" "69x" "B")
_SHARED_AT, _SHARED_END = 12, 116         # Service_Id .. Src_Id, the sender's own fields
_SHARED = struct.Struct(">10sB21s3x6s2s6s17s17s21s")
_DESTINATION = 21
_MAX_DESTINATIONS, _MAX_CONTENT, _MAX_ASCII_CONTENT = 99, 140, 159
# A SUBMIT's values with the shared run's fields decoded (the others to be set), by the run's
# bytes: a sender's SUBMITs share them (one Service_Id, Msg_src, Src_Id, ...), and decoding
# them is most of reading one. Cleared when full; it only ever holds what decoding those very
# bytes gives.
_shared_fields: dict[bytes, dict] = {}
_SHARED_LIMIT = 1024


def _text(field: bytes) -> str:
    """A text field as the layouts read it: cut at its first NUL, ASCII (UnicodeDecodeError
    otherwise)."""
    return field.partition(b"\0")[0].decode("ascii")


def _decode_shared(run: bytes) -> dict:
    """A SUBMIT's values in field order, with Service_Id, Fee_UserType, Fee_terminal_Id,
    Msg_src, FeeType, FeeCode, ValId_Time, At_Time and Src_Id read from the run's bytes
    (UnicodeDecodeError for a non-ASCII one), the others None."""
    (service_id, fee_user_type, fee_terminal_id, msg_src, fee_type, fee_code, valid_time,
     at_time, src_id) = _SHARED.unpack(run)
    values = {
        "msg_id": None, "pk_total": None, "pk_number": None, "registered_delivery": None,
        "msg_level": None, "service_id": _text(service_id), "fee_user_type": fee_user_type,
        "fee_terminal_id": _text(fee_terminal_id), "tp_pid": None, "tp_udhi": None,
        "msg_fmt": None, "msg_src": _text(msg_src), "fee_type": _text(fee_type),
        "fee_code": _text(fee_code), "valid_time": _text(valid_time),
        "at_time": _text(at_time), "src_id": _text(src_id), "dest_terminal_ids": None,
        "msg_content": None, "reserve": None, "sequence_id": None}
    if len(_shared_fields) >= _SHARED_LIMIT:
        _shared_fields.clear()
    _shared_fields[run] = values
    return values


def decode_submit_frame(data: bytes, start: int, end: int, sequence_id: int) -> Submit | None:
    """The SUBMIT in the whole frame ``data[start:end]``, exactly as the layouts give it; None
    when it is not well formed (a count, a length or the size wrong, a non-ASCII text field),
    for the layouts to explain."""
    body = start + 12
    if end - body < _SUBMIT_HEAD.size + _DESTINATION + 9:
        return None
    (msg_id, pk_total, pk_number, registered_delivery, msg_level, tp_pid, tp_udhi, msg_fmt,
     count) = _SUBMIT_HEAD.unpack_from(data, body)
    at = body + _SUBMIT_HEAD.size
    stop = at + count * _DESTINATION
    if not 1 <= count <= _MAX_DESTINATIONS or stop >= end:
        return None
    length = data[stop]
    if length > _MAX_CONTENT and not (msg_fmt == 0 and length <= _MAX_ASCII_CONTENT):
        return None
    if stop + 1 + length + 8 != end:
        return None
    run = data[body + _SHARED_AT:body + _SHARED_END]
    try:
        shared = _shared_fields.get(run) or _decode_shared(run)
        if count == 1:
            destinations = (data[at:stop].partition(b"\0")[0].decode("ascii"),)
        else:
            destinations = tuple([_text(data[i:i + _DESTINATION])
                                  for i in range(at, stop, _DESTINATION)])
        reserve = data[end - 8:end].partition(b"\0")[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    values = shared.copy()
    values["msg_id"], values["pk_total"], values["pk_number"] = msg_id, pk_total, pk_number
    values["registered_delivery"], values["msg_level"] = registered_delivery, msg_level
    values["tp_pid"], values["tp_udhi"], values["msg_fmt"] = tp_pid, tp_udhi, msg_fmt
    values["dest_terminal_ids"], values["reserve"] = destinations, reserve
    values["msg_content"], values["sequence_id"] = data[stop + 1:stop + 1 + length], sequence_id
    pdu = _new(Submit)
    _set(pdu, "__dict__", values)
    return pdu


# A DELIVER carrying a 60-byte status report (§10, §10.1): its fields, the report's, Reserve.
_REPORT_DELIVER = struct.Struct(">Q21s10sBBB21sBB" "Q7s10s10s21sI" "8s")


def report_deliver(msg_id: int, report: StatusReport, *, dest_id: str = "",
                   service_id: str = "", src_terminal_id: str = "") -> Deliver:
    """``Deliver(msg_id=msg_id, dest_id=dest_id, service_id=service_id,
    src_terminal_id=src_terminal_id, report=report)``, prepared (``codec.prepare``): its body
    packed now, so that encoding it, or a copy under another Sequence_Id, packs only the
    header. The PDU and its bytes are exactly the plain one's; for a value that does not fit
    (or is not of the usual kind) the plain one is built instead, and raises the plain one's
    ``ValueError`` when its report does not fit."""
    try:
        body = _pack_report_deliver(msg_id, report, dest_id, service_id, src_terminal_id)
    except (_Misfit, AttributeError, TypeError, UnicodeError, struct.error):
        return Deliver(msg_id=msg_id, dest_id=dest_id, service_id=service_id,
                       src_terminal_id=src_terminal_id, report=report)
    pdu = _new(Deliver)
    _set(pdu, "__dict__", {
        "sequence_id": 0, "msg_id": msg_id, "dest_id": dest_id, "service_id": service_id,
        "tp_pid": 0, "tp_udhi": 0, "msg_fmt": 0, "src_terminal_id": src_terminal_id,
        "registered_delivery": 1, "msg_content": body[65:125], "reserve": "",
        "report": report, ENCODED_BODY: body})
    return pdu


def _pack_report_deliver(msg_id, report, dest_id, service_id, src_terminal_id) -> bytes:
    """The DELIVER's body; raises when a value is not of the usual kind or does not fit (the
    numbers are packed as the layouts pack them: by the same ``struct`` codes)."""
    if type(report) is not StatusReport:
        raise _Misfit
    values = report.__dict__
    dest, service, src = (dest_id.encode("ascii"), service_id.encode("ascii"),
                          src_terminal_id.encode("ascii"))
    stat, submit_time, done_time, terminal = (
        values["stat"].encode("ascii"), values["submit_time"].encode("ascii"),
        values["done_time"].encode("ascii"), values["dest_terminal_id"].encode("ascii"))
    if len(dest) > 21 or len(service) > 10 or len(src) > 21 or len(stat) > 7 \
            or len(submit_time) > 10 or len(done_time) > 10 or len(terminal) > 21:
        raise _Misfit
    return _REPORT_DELIVER.pack(msg_id, dest, service, 0, 0, 0, src, 1, 60, values["msg_id"],
                                stat, submit_time, done_time, terminal,
                                values["smsc_sequence"], b"")


class _Misfit(Exception):
    """A value report_deliver leaves to the plain Deliver."""
