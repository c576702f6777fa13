"""The status report that a DELIVER carries in its Msg_Content (reference §10.1): the record,
and its 60-byte CMPP 2.0 body (71 bytes as some 2.0 gateways send it, CMPP 3.0's size) read
and written through compiled layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import ConstructError

from . import wire
from .errors import PARSE_ERRORS, CodecError, failed_field, failure_reason


@dataclass(frozen=True)
class StatusReport:
    """The status report in a DELIVER's Msg_Content (§10.1).

    ``msg_id`` is the Msg_Id the ISMG gave the original SUBMIT in its SUBMIT_RESP.
    """

    msg_id: int = 0
    stat: str = ""
    submit_time: str = ""
    done_time: str = ""
    dest_terminal_id: str = ""
    smsc_sequence: int = 0


def decode_report(content: bytes) -> StatusReport:
    """Parse a status report body; its layout (60 or 71 bytes) is chosen by its length.

    Raises ``CodecError`` for any other length or a bad field.
    """
    parse = _REPORTS.get(len(content))
    if parse is None:
        raise CodecError(f"a status report is 60 or 71 bytes, not {len(content)}",
                         field="Msg_Length")
    try:
        values, _ = parse(content, 0)
    except PARSE_ERRORS:
        layout = wire.REPORT if len(content) == 60 else wire.REPORT_71
        try:
            layout.parse(content)
        except ConstructError as error:
            raise CodecError(failure_reason(error), field=failed_field(error)) from None
        raise CodecError("status report did not parse") from None
    report = object.__new__(StatusReport)
    object.__setattr__(report, "__dict__", values)
    return report


def encode_report(report: StatusReport) -> bytes:
    """The 60-byte CMPP 2.0 body of a status report; ValueError if a field does not fit."""
    try:
        return _BUILD_REPORT(report.__dict__)
    except Exception:  # noqa: BLE001 - explained below
        try:
            wire.REPORT.build(dict(report.__dict__))
        except ConstructError as error:
            raise ValueError(f"StatusReport.{failed_field(error)}: "
                             f"{failure_reason(error)}") from None
        raise ValueError(f"StatusReport: cannot encode {report!r}") from None


_REPORTS = {60: wire.REPORT.compile().parse_from, 71: wire.REPORT_71.compile().parse_from}
_BUILD_REPORT = wire.REPORT.compile().build_bytes
