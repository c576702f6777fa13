"""The CMPP 2.0 wire layouts: one per PDU body, in the spec's field order (reference §6-§12).

Each layout is a ``Layout`` (a construct ``Struct``) that reads like the spec's table. Sizes
live here and nowhere else; the PDU classes in ``pdus.py`` carry the same field names.
"""

from __future__ import annotations

from construct import Array, Bytes, Int8ub, Int32ub, Int64ub, Rebuild, Struct, len_, this

from .layout import Layout, Require, Text

#: Total_Length, Command_Id, Sequence_Id: 12 bytes in front of every PDU (§4).
HEADER = Struct("total_length" / Int32ub, "command_id" / Int32ub, "sequence_id" / Int32ub)
HEADER_SIZE = 12

MAX_DESTINATIONS = 99          # DestUsr_tl "fewer than 100" (§8)
MAX_CONTENT = 140              # Msg_Length for every Msg_Fmt but ASCII
MAX_ASCII_CONTENT = 159        # "when Msg_Fmt = 0: < 160 bytes"
REPORT_SIZES = (60, 71)        # 2.0 report body, and the 3.0-sized one real gateways send (§10.1)

# Rules that hold for SUBMIT and FWD alike.
_DESTINATION_COUNT = Require((this.dest_usr_tl >= 1) & (this.dest_usr_tl <= MAX_DESTINATIONS),
                             f"DestUsr_tl must be 1..{MAX_DESTINATIONS}")
_CONTENT_LENGTH = Require(
    (this.msg_length <= MAX_CONTENT) | ((this.msg_fmt == 0) & (this.msg_length <= MAX_ASCII_CONTENT)),
    f"Msg_Length must be at most {MAX_CONTENT} bytes ({MAX_ASCII_CONTENT} for ASCII)")

CONNECT = Layout(
    "source_addr" / Text(6),
    "authenticator_source" / Bytes(16),
    "version" / Int8ub,
    "timestamp" / Int32ub,
)

CONNECT_RESP = Layout(
    "status" / Int8ub,
    "authenticator_ismg" / Bytes(16),
    "version" / Int8ub,
)

EMPTY = Layout()

ACTIVE_TEST_RESP = Layout(
    "reserved" / Int8ub,
)

SUBMIT = Layout(
    "msg_id" / Int64ub,
    "pk_total" / Int8ub,
    "pk_number" / Int8ub,
    "registered_delivery" / Int8ub,
    "msg_level" / Int8ub,
    "service_id" / Text(10),
    "fee_user_type" / Int8ub,
    "fee_terminal_id" / Text(21),
    "tp_pid" / Int8ub,
    "tp_udhi" / Int8ub,
    "msg_fmt" / Int8ub,
    "msg_src" / Text(6),
    "fee_type" / Text(2),
    "fee_code" / Text(6),
    "valid_time" / Text(17),
    "at_time" / Text(17),
    "src_id" / Text(21),
    "dest_usr_tl" / Rebuild(Int8ub, len_(this.dest_terminal_ids)),
    _DESTINATION_COUNT,
    "dest_terminal_ids" / Array(this.dest_usr_tl, Text(21)),
    "msg_length" / Rebuild(Int8ub, len_(this.msg_content)),
    _CONTENT_LENGTH,
    "msg_content" / Bytes(this.msg_length),
    "reserve" / Text(8),
)

SUBMIT_RESP = Layout(
    "msg_id" / Int64ub,
    "result" / Int8ub,
)

DELIVER = Layout(
    "msg_id" / Int64ub,
    "dest_id" / Text(21),
    "service_id" / Text(10),
    "tp_pid" / Int8ub,
    "tp_udhi" / Int8ub,
    "msg_fmt" / Int8ub,
    "src_terminal_id" / Text(21),
    "registered_delivery" / Int8ub,
    "msg_length" / Rebuild(Int8ub, len_(this.msg_content)),
    Require((this.registered_delivery != 1) | (this.msg_length == 60) | (this.msg_length == 71),
            "a status report (Registered_Delivery 1) is 60 or 71 bytes"),
    Require((this.registered_delivery == 1) | (this.msg_length <= MAX_CONTENT)
            | ((this.msg_fmt == 0) & (this.msg_length <= MAX_ASCII_CONTENT)),
            f"Msg_Length must be at most {MAX_CONTENT} bytes ({MAX_ASCII_CONTENT} for ASCII)"),
    "msg_content" / Bytes(this.msg_length),
    "reserve" / Text(8),
)

DELIVER_RESP = Layout(
    "msg_id" / Int64ub,
    "result" / Int8ub,
)

QUERY = Layout(
    "time" / Text(8),
    "query_type" / Int8ub,
    "query_code" / Text(10),
    "reserve" / Text(8),
)

QUERY_RESP = Layout(
    "time" / Text(8),
    "query_type" / Int8ub,
    "query_code" / Text(10),
    "mt_tlmsg" / Int32ub,
    "mt_tlusr" / Int32ub,
    "mt_scs" / Int32ub,
    "mt_wt" / Int32ub,
    "mt_fl" / Int32ub,
    "mo_scs" / Int32ub,
    "mo_wt" / Int32ub,
    "mo_fl" / Int32ub,
)

CANCEL = Layout(
    "msg_id" / Int64ub,
)

CANCEL_RESP = Layout(
    "success_id" / Int8ub,
)

# ISMG to ISMG only; kept because the reference vectors include gocmpp's 2.x layout (§12.4).
FWD = Layout(
    "source_id" / Text(6),
    "destination_id" / Text(6),
    "nodes_count" / Int8ub,
    "msg_fwd_type" / Int8ub,
    "msg_id" / Int64ub,
    "pk_total" / Int8ub,
    "pk_number" / Int8ub,
    "registered_delivery" / Int8ub,
    "msg_level" / Int8ub,
    "service_id" / Text(10),
    "fee_user_type" / Int8ub,
    "fee_terminal_id" / Text(21),
    "tp_pid" / Int8ub,
    "tp_udhi" / Int8ub,
    "msg_fmt" / Int8ub,
    "msg_src" / Text(6),
    "fee_type" / Text(2),
    "fee_code" / Text(6),
    "valid_time" / Text(17),
    "at_time" / Text(17),
    "src_id" / Text(21),
    "dest_usr_tl" / Rebuild(Int8ub, len_(this.dest_ids)),
    _DESTINATION_COUNT,
    "dest_ids" / Array(this.dest_usr_tl, Text(21)),
    "msg_length" / Rebuild(Int8ub, len_(this.msg_content)),
    _CONTENT_LENGTH,
    "msg_content" / Bytes(this.msg_length),
    "reserve" / Text(8),
)

FWD_RESP = Layout(
    "msg_id" / Int64ub,
    "pk_total" / Int8ub,
    "pk_number" / Int8ub,
    "result" / Int8ub,
)

# The status report carried in a DELIVER's Msg_Content when Registered_Delivery is 1 (§10.1).
def _report(dest_size: int) -> Layout:
    return Layout(
        "msg_id" / Int64ub,
        "stat" / Text(7),
        "submit_time" / Text(10),
        "done_time" / Text(10),
        "dest_terminal_id" / Text(dest_size),
        "smsc_sequence" / Int32ub,
    )


REPORT = _report(21)        # 60 bytes: CMPP 2.0
REPORT_71 = _report(32)     # 71 bytes: the 3.0 size some 2.0 gateways send
