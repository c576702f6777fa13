"""cmpp: a sans-IO CMPP 2.0 codec (China Mobile Peer to Peer).

Bytes in, typed PDUs out, and back: ``encode``, ``decode``, ``FrameDecoder`` (``prepare`` for a
PDU encoded many times, ``SubmitTemplate`` for one sender's SUBMITs, ``report_deliver`` for an
ISMG's status reports); the login authenticators, Msg_Id packing, text encodings and
long-message split and reassembly. No sockets, no event loop, no clock: time is always
passed in.
"""

from .auth import authenticator_ismg, authenticator_source, timestamp
from .codec import DEFAULT_MAX_LENGTH, FrameDecoder, SubmitTemplate, decode, encode, prepare
from .errors import CodecError, ProtocolError
from .fastpath import report_deliver
from .msgid import MsgId, nth_of_mass_send
from .pdus import (
    ActiveTest,
    ActiveTestResp,
    Cancel,
    CancelResp,
    CommandId,
    Connect,
    ConnectResp,
    ConnectStatus,
    Deliver,
    DeliverResp,
    Fwd,
    FwdResp,
    Pdu,
    Query,
    QueryResp,
    StatusReport,
    Submit,
    SubmitResp,
    SubmitResult,
    Terminate,
    TerminateResp,
)
from .reassembly import Message, Reassembler
from .report import decode_report, encode_report
from .text import Concatenation, MsgFmt, Segment, decode_text, encode_text, split_text, split_udh

__all__ = [
    "ActiveTest", "ActiveTestResp", "Cancel", "CancelResp", "CodecError", "CommandId",
    "Concatenation", "Connect", "ConnectResp", "ConnectStatus", "DEFAULT_MAX_LENGTH", "Deliver",
    "DeliverResp", "FrameDecoder", "Fwd", "FwdResp", "Message", "MsgFmt", "MsgId", "Pdu",
    "ProtocolError", "Query", "QueryResp", "Reassembler", "Segment", "StatusReport", "Submit",
    "SubmitResp", "SubmitResult", "SubmitTemplate", "Terminate", "TerminateResp", "authenticator_ismg",
    "authenticator_source", "decode", "decode_report", "decode_text", "encode", "encode_report",
    "encode_text", "nth_of_mass_send", "prepare", "report_deliver", "split_text", "split_udh",
    "timestamp",
]
