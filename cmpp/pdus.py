"""The CMPP 2.0 PDUs as frozen dataclasses, one per command (reference §5-§12).

Field names are the spec's, in snake_case and in wire order, after ``sequence_id``. Counts and
lengths that the wire carries (DestUsr_tl, Msg_Length) are not fields: they follow from the
tuple and the bytes they describe. Text fields are ``str`` (ASCII); ``msg_content`` is bytes.
Values are checked when the PDU is encoded, not when it is built.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum
from typing import ClassVar

from . import wire
from .layout import Layout
from .report import StatusReport, decode_report, encode_report


class CommandId(IntEnum):
    """Command_Id values of the SP link (and FWD, whose 2.x layout the vectors carry)."""

    CONNECT = 0x00000001
    TERMINATE = 0x00000002
    SUBMIT = 0x00000004
    DELIVER = 0x00000005
    QUERY = 0x00000006
    CANCEL = 0x00000007
    ACTIVE_TEST = 0x00000008
    FWD = 0x00000009
    CONNECT_RESP = 0x80000001
    TERMINATE_RESP = 0x80000002
    SUBMIT_RESP = 0x80000004
    DELIVER_RESP = 0x80000005
    QUERY_RESP = 0x80000006
    CANCEL_RESP = 0x80000007
    ACTIVE_TEST_RESP = 0x80000008
    FWD_RESP = 0x80000009


RESPONSE_BIT = 0x80000000


class ConnectStatus(IntEnum):
    """CONNECT_RESP Status (§6.2); 5 and above are "other errors"."""

    OK = 0
    MESSAGE_STRUCTURE_ERROR = 1
    ILLEGAL_SOURCE_ADDRESS = 2
    AUTHENTICATION_ERROR = 3
    VERSION_TOO_HIGH = 4


class SubmitResult(IntEnum):
    """SUBMIT_RESP Result (§9): 0-8 from 2.0, 9-13 from 2.1; anything else is "other"."""

    OK = 0
    MESSAGE_STRUCTURE_ERROR = 1
    COMMAND_ID_ERROR = 2
    DUPLICATE_SEQUENCE_ID = 3
    MESSAGE_LENGTH_ERROR = 4
    FEE_CODE_ERROR = 5
    MESSAGE_TOO_LONG = 6
    SERVICE_ID_ERROR = 7
    FLOW_CONTROL = 8
    CHARGED_NUMBER_NOT_SERVED = 9
    SRC_ID_ERROR = 10
    MSG_SRC_ERROR = 11
    FEE_TERMINAL_ID_ERROR = 12
    DEST_TERMINAL_ID_ERROR = 13


VERSION_2_0 = 0x20


class Pdu:
    """Base of every PDU class: its Command_Id and its wire layout."""

    command_id: ClassVar[int]
    layout: ClassVar[Layout]
    sequence_id: int

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    def with_sequence(self, sequence_id: int):
        """This PDU with another Sequence_Id (a cheap copy; the values are not checked again)."""
        copy = object.__new__(type(self))
        values = dict(self.__dict__)
        values["sequence_id"] = sequence_id
        object.__setattr__(copy, "__dict__", values)
        return copy


@dataclass(frozen=True)
class Connect(Pdu):
    command_id: ClassVar[int] = CommandId.CONNECT
    layout: ClassVar[Layout] = wire.CONNECT
    sequence_id: int = 0
    source_addr: str = ""
    authenticator_source: bytes = bytes(16)
    version: int = VERSION_2_0
    timestamp: int = 0


@dataclass(frozen=True)
class ConnectResp(Pdu):
    command_id: ClassVar[int] = CommandId.CONNECT_RESP
    layout: ClassVar[Layout] = wire.CONNECT_RESP
    sequence_id: int = 0
    status: int = 0
    authenticator_ismg: bytes = bytes(16)
    version: int = VERSION_2_0


@dataclass(frozen=True)
class Terminate(Pdu):
    command_id: ClassVar[int] = CommandId.TERMINATE
    layout: ClassVar[Layout] = wire.EMPTY
    sequence_id: int = 0


@dataclass(frozen=True)
class TerminateResp(Pdu):
    command_id: ClassVar[int] = CommandId.TERMINATE_RESP
    layout: ClassVar[Layout] = wire.EMPTY
    sequence_id: int = 0


@dataclass(frozen=True)
class ActiveTest(Pdu):
    command_id: ClassVar[int] = CommandId.ACTIVE_TEST
    layout: ClassVar[Layout] = wire.EMPTY
    sequence_id: int = 0


@dataclass(frozen=True)
class ActiveTestResp(Pdu):
    """Body is one Reserved byte (13 bytes in all); a 12-byte one is accepted when decoding."""

    command_id: ClassVar[int] = CommandId.ACTIVE_TEST_RESP
    layout: ClassVar[Layout] = wire.ACTIVE_TEST_RESP
    sequence_id: int = 0
    reserved: int = 0


@dataclass(frozen=True)
class Submit(Pdu):
    """An MT message to 1-99 recipients. A status report is requested unless told otherwise."""

    command_id: ClassVar[int] = CommandId.SUBMIT
    layout: ClassVar[Layout] = wire.SUBMIT
    sequence_id: int = 0
    msg_id: int = 0
    pk_total: int = 1
    pk_number: int = 1
    registered_delivery: int = 1
    msg_level: int = 0
    service_id: str = ""
    fee_user_type: int = 0
    fee_terminal_id: str = ""
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    msg_src: str = ""
    fee_type: str = "01"
    fee_code: str = "000000"
    valid_time: str = ""
    at_time: str = ""
    src_id: str = ""
    dest_terminal_ids: tuple[str, ...] = ()
    msg_content: bytes = b""
    reserve: str = ""


@dataclass(frozen=True)
class SubmitResp(Pdu):
    command_id: ClassVar[int] = CommandId.SUBMIT_RESP
    layout: ClassVar[Layout] = wire.SUBMIT_RESP
    sequence_id: int = 0
    msg_id: int = 0
    result: int = 0


@dataclass(frozen=True)
class Deliver(Pdu):
    """An MO message, or a status report when ``registered_delivery`` is 1.

    ``report`` is the parsed report (None for MO). Built with ``report=`` and no
    ``msg_content``, the 60-byte report body is encoded into ``msg_content``.
    """

    command_id: ClassVar[int] = CommandId.DELIVER
    layout: ClassVar[Layout] = wire.DELIVER
    sequence_id: int = 0
    msg_id: int = 0
    dest_id: str = ""
    service_id: str = ""
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    src_terminal_id: str = ""
    registered_delivery: int = 0
    msg_content: bytes = b""
    reserve: str = ""
    report: StatusReport | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.report is not None:
            object.__setattr__(self, "registered_delivery", 1)
            if not self.msg_content:
                object.__setattr__(self, "msg_content", encode_report(self.report))
        elif self.registered_delivery == 1 and self.msg_content:
            object.__setattr__(self, "report", decode_report(self.msg_content))


@dataclass(frozen=True)
class DeliverResp(Pdu):
    """Answers a DELIVER: ``msg_id`` echoes the DELIVER's own Msg_Id, not the report's."""

    command_id: ClassVar[int] = CommandId.DELIVER_RESP
    layout: ClassVar[Layout] = wire.DELIVER_RESP
    sequence_id: int = 0
    msg_id: int = 0
    result: int = 0


@dataclass(frozen=True)
class Query(Pdu):
    command_id: ClassVar[int] = CommandId.QUERY
    layout: ClassVar[Layout] = wire.QUERY
    sequence_id: int = 0
    time: str = ""
    query_type: int = 0
    query_code: str = ""
    reserve: str = ""


@dataclass(frozen=True)
class QueryResp(Pdu):
    command_id: ClassVar[int] = CommandId.QUERY_RESP
    layout: ClassVar[Layout] = wire.QUERY_RESP
    sequence_id: int = 0
    time: str = ""
    query_type: int = 0
    query_code: str = ""
    mt_tlmsg: int = 0
    mt_tlusr: int = 0
    mt_scs: int = 0
    mt_wt: int = 0
    mt_fl: int = 0
    mo_scs: int = 0
    mo_wt: int = 0
    mo_fl: int = 0


@dataclass(frozen=True)
class Cancel(Pdu):
    command_id: ClassVar[int] = CommandId.CANCEL
    layout: ClassVar[Layout] = wire.CANCEL
    sequence_id: int = 0
    msg_id: int = 0


@dataclass(frozen=True)
class CancelResp(Pdu):
    command_id: ClassVar[int] = CommandId.CANCEL_RESP
    layout: ClassVar[Layout] = wire.CANCEL_RESP
    sequence_id: int = 0
    success_id: int = 0


@dataclass(frozen=True)
class Fwd(Pdu):
    """ISMG-to-ISMG forward (gocmpp's 2.x layout); not used on an SP link."""

    command_id: ClassVar[int] = CommandId.FWD
    layout: ClassVar[Layout] = wire.FWD
    sequence_id: int = 0
    source_id: str = ""
    destination_id: str = ""
    nodes_count: int = 0
    msg_fwd_type: int = 0
    msg_id: int = 0
    pk_total: int = 1
    pk_number: int = 1
    registered_delivery: int = 0
    msg_level: int = 0
    service_id: str = ""
    fee_user_type: int = 0
    fee_terminal_id: str = ""
    tp_pid: int = 0
    tp_udhi: int = 0
    msg_fmt: int = 0
    msg_src: str = ""
    fee_type: str = ""
    fee_code: str = ""
    valid_time: str = ""
    at_time: str = ""
    src_id: str = ""
    dest_ids: tuple[str, ...] = ()
    msg_content: bytes = b""
    reserve: str = ""


@dataclass(frozen=True)
class FwdResp(Pdu):
    command_id: ClassVar[int] = CommandId.FWD_RESP
    layout: ClassVar[Layout] = wire.FWD_RESP
    sequence_id: int = 0
    msg_id: int = 0
    pk_total: int = 1
    pk_number: int = 1
    result: int = 0


def _fast_init(cls):
    """Give a frozen dataclass an ``__init__`` that sets ``__dict__`` in one step.

    The generated one calls ``object.__setattr__`` once per field, about 3 us for a SUBMIT;
    this one takes the same arguments and defaults, and still runs ``__post_init__``."""
    specs = fields(cls)
    if any(f.default is MISSING for f in specs):
        raise TypeError(f"{cls.__name__}: every field needs a plain default")
    params = ", ".join(f"{f.name}=_default_{f.name}" for f in specs)
    values = ", ".join(f"{f.name!r}: {f.name}" for f in specs)
    post = "\n    self.__post_init__()" if hasattr(cls, "__post_init__") else ""
    source = f"def __init__(self, {params}):\n    _set(self, '__dict__', {{{values}}}){post}\n"
    namespace = {"_set": object.__setattr__, **{f"_default_{f.name}": f.default for f in specs}}
    exec(source, namespace)  # noqa: S102 - code built from our own field names only
    namespace["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = namespace["__init__"]
    return cls


PDU_CLASSES: tuple[type[Pdu], ...] = (
    Connect, ConnectResp, Terminate, TerminateResp, Submit, SubmitResp, Deliver, DeliverResp,
    Query, QueryResp, Cancel, CancelResp, ActiveTest, ActiveTestResp, Fwd, FwdResp,
)

for _cls in (*PDU_CLASSES, StatusReport):
    _fast_init(_cls)
