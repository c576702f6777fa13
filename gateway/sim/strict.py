"""What a strict SMS center refuses: the checks of the simulator's strict mode.

Real centers refuse much that a lenient simulator lets through. These checks are the refusals
that sections 6, 8 and 9 of the CMPP 2.0 reference allow, each answered with the code the
spec gives for it: a CONNECT_RESP Status (1 structure, 3 authentication, 4 version too high,
5 other) or a SUBMIT_RESP Result (1 structure, 5 fee code, 7 Service_Id, 10 Src_Id,
11 Msg_src, 12 Fee_terminal_Id, 13 Dest_terminal_Id). A field without a code of its own that
holds a value the spec does not define is a structure error (1).

What the codec refuses already (a DestUsr_tl outside 1..99, a Msg_Length over 140 bytes, or
159 for ASCII, a length that does not add up) is answered Result 1 in either mode, before
these checks run. Each check returns a ``Refusal`` naming the field, never its value: a
number or the content must not reach a log.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import NamedTuple, Protocol

import cmpp
from cmpp.pdus import ConnectStatus, SubmitResult
from cmpp.text import find_concatenation

VERSION = 0x20                                     # CMPP 2.0 and nothing else
MOBILE = re.compile(r"(?:\+?86)?1[3-9][0-9]{9}")    # a mainland mobile number (15: MSISDN)
MSG_FMTS = frozenset({0, 3, 4, 8, 15})             # 14.1: ASCII, SIM write, binary, UCS2, GB
FEE_TYPES = frozenset({"01", "02", "03", "04", "05"})
MAX_MSG_LEVEL = 9                                  # 8: "0-9 is common"
# 15: YYMMDDhhmmss, tenths, quarter hours from UTC, and + / - (or R: relative to the center)
SMPP_TIME = re.compile(r"([0-9]{12})([0-9])([0-9]{2})([+\-R])")
_CODECS = {8: "utf-16-be", 15: "gbk"}


class Refusal(NamedTuple):
    """A CONNECT_RESP Status or SUBMIT_RESP Result, and the field it refuses, in words."""

    code: int
    reason: str


class StrictAccount(Protocol):
    account: str
    access_number: str
    service_ids: tuple[str, ...]


# ----------------------------------------------------------------------------- CONNECT (6)

def check_connect(connect: cmpp.Connect, now: datetime, tolerance: float) -> Refusal | None:
    """A CONNECT's Version (0x20 only) and Timestamp (a date within ``tolerance`` seconds of
    ``now``, China time); None when both are right. The account and the AuthenticatorSource
    are the simulator's checks in either mode."""
    if connect.version > VERSION:
        return Refusal(ConnectStatus.VERSION_TOO_HIGH,
                       f"Version 0x{connect.version:02x} is above 0x20 (CMPP 2.0)")
    if connect.version < VERSION:
        return Refusal(5, f"Version 0x{connect.version:02x} is not 0x20 (CMPP 2.0)")
    skew = timestamp_skew(connect.timestamp, now)
    if skew is None:
        return Refusal(ConnectStatus.MESSAGE_STRUCTURE_ERROR,
                       f"Timestamp {connect.timestamp:010d} is not a date (MMDDHHMMSS)")
    if skew > tolerance:
        return Refusal(ConnectStatus.AUTHENTICATION_ERROR,
                       f"Timestamp is {skew:.0f} s away from China time (at most {tolerance:g})")
    return None


def timestamp_skew(timestamp: int, now: datetime) -> float | None:
    """Seconds between a CONNECT Timestamp (MMDDHHMMSS, no year) and ``now``, in whichever
    year puts them closest (a login at New Year); None when it names no date."""
    month, rest = divmod(timestamp, 10**8)
    day, rest = divmod(rest, 10**6)
    hour, rest = divmod(rest, 10**4)
    minute, second = divmod(rest, 100)
    skews = []
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            then = now.replace(year=year, month=month, day=day, hour=hour, minute=minute,
                               second=second, microsecond=0)
        except ValueError:              # month 13, February 30, hour 24, ...
            continue
        skews.append(abs((then - now).total_seconds()))
    return min(skews, default=None)


# ----------------------------------------------------------------------------- SUBMIT (8, 9)

def check_submit(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    """The first field of a SUBMIT (in the spec's order) that a strict center refuses, with
    its Result; None when it would take it."""
    for check in _SUBMIT_CHECKS:
        refusal = check(submit, account)
        if refusal is not None:
            return refusal
    return None


def _structure(reason: str) -> Refusal:
    return Refusal(SubmitResult.MESSAGE_STRUCTURE_ERROR, reason)


def _packets(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    if not 1 <= submit.pk_number <= submit.pk_total:
        return _structure(f"Pk_number {submit.pk_number} of Pk_total {submit.pk_total}: "
                          "both count from 1")
    return None


def _registered_delivery(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    value = submit.registered_delivery
    if value not in (0, 1, 2):
        return _structure(f"Registered_Delivery {value}: 0 (no report), 1 (report) or 2 "
                          "(SMC bill)")
    if value == 2 and len(submit.dest_terminal_ids) > 1:
        return _structure("Registered_Delivery 2 (SMC bill) to several numbers")
    return None


def _msg_level(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    if submit.msg_level > MAX_MSG_LEVEL:
        return _structure(f"Msg_level {submit.msg_level}: 0 to {MAX_MSG_LEVEL}")
    return None


def _service_id(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    service_id = submit.service_id
    if account.service_ids and service_id not in account.service_ids:
        return Refusal(SubmitResult.SERVICE_ID_ERROR,
                       f"Service_Id {service_id!r} is not one of the account's")
    if not re.fullmatch(r"[!-~]*", service_id):
        return Refusal(SubmitResult.SERVICE_ID_ERROR,
                       "Service_Id holds a space or a control character")
    return None


def _fee_user(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    if submit.fee_user_type > 3:
        return _structure(f"Fee_UserType {submit.fee_user_type}: 0 to 3")
    if submit.fee_user_type == 3 and not MOBILE.fullmatch(submit.fee_terminal_id):
        return Refusal(SubmitResult.FEE_TERMINAL_ID_ERROR,
                       "Fee_UserType 3 without a mobile number in Fee_terminal_Id")
    return None


def _formats(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    if submit.tp_udhi not in (0, 1):
        return _structure(f"TP_udhi {submit.tp_udhi}: 0 or 1")
    if submit.msg_fmt not in MSG_FMTS:
        return _structure(f"Msg_Fmt {submit.msg_fmt}: one of 0, 3, 4, 8, 15")
    return None


def _msg_src(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    if submit.msg_src != account.account:
        return Refusal(SubmitResult.MSG_SRC_ERROR, "Msg_src is not the account (SP_Id)")
    return None


def _fee(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    if submit.fee_type not in FEE_TYPES:
        return Refusal(SubmitResult.FEE_CODE_ERROR, f"FeeType {submit.fee_type!r}: 01 to 05")
    if not re.fullmatch(r"[0-9]{1,6}", submit.fee_code):
        return Refusal(SubmitResult.FEE_CODE_ERROR,
                       f"FeeCode {submit.fee_code!r}: 1 to 6 digits (fen)")
    return None


def _times(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    for name, value in (("ValId_Time", submit.valid_time), ("At_Time", submit.at_time)):
        if value and not _smpp_time(value):
            return _structure(f"{name} {value!r} is not YYMMDDhhmmsstnnp")
    return None


def _smpp_time(value: str) -> bool:
    """An SMPP 3.3 time string (15): absolute, a real date and at most 48 quarter hours
    from UTC; or relative (R), with t 0 and nn 00."""
    match = SMPP_TIME.fullmatch(value)
    if match is None:
        return False
    stamp, tenths, quarters, sign = match.groups()
    if sign == "R":
        return tenths == "0" and quarters == "00"
    try:
        datetime.strptime(stamp, "%y%m%d%H%M%S")
    except ValueError:
        return False
    return int(quarters) <= 48


def _src_id(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    src_id, access = submit.src_id, account.access_number
    if not re.fullmatch(r"[0-9]+", src_id):
        return Refusal(SubmitResult.SRC_ID_ERROR,
                       "Src_Id is not digits" if src_id else "Src_Id is empty")
    if not src_id.startswith(access):
        return Refusal(SubmitResult.SRC_ID_ERROR,
                       f"Src_Id is not the access number {access} or an extension of it")
    return None


def _destinations(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    for n, number in enumerate(submit.dest_terminal_ids, 1):
        if not MOBILE.fullmatch(number):
            return Refusal(SubmitResult.DEST_TERMINAL_ID_ERROR,
                           f"Dest_terminal_Id {n} of {len(submit.dest_terminal_ids)} is not a "
                           "mobile number")
    return None


def _content(submit: cmpp.Submit, account: StrictAccount) -> Refusal | None:
    """A UDH where TP_udhi says, Pk_* that agree with its concatenation element, and text
    that is what Msg_Fmt says."""
    content, header = submit.msg_content, 0
    if submit.tp_udhi:
        if not content or 1 + content[0] > len(content):
            return _structure("TP_udhi 1 without a whole User Data Header")
        header = 1 + content[0]
        elements, _ = cmpp.split_udh(content, 1)
        concat = find_concatenation(elements)
        if concat is not None and not 1 <= concat.number <= concat.total:
            return _structure(f"UDH part {concat.number} of {concat.total}")
        if concat is not None and submit.pk_total > 1 \
                and (submit.pk_total, submit.pk_number) != (concat.total, concat.number):
            return _structure(f"Pk_total/Pk_number {submit.pk_total}/{submit.pk_number} "
                              f"against the UDH's {concat.total}/{concat.number}")
    return _text(submit.msg_fmt, content[header:])


def _text(msg_fmt: int, payload: bytes) -> Refusal | None:
    if msg_fmt == 0 and not payload.isascii():
        return _structure("Msg_Fmt 0 (ASCII) with bytes above 0x7F")
    codec = _CODECS.get(msg_fmt)
    if codec is None:
        return None
    try:
        payload.decode(codec)
    except UnicodeDecodeError:
        return _structure(f"Msg_Fmt {msg_fmt} with content that is not {codec.upper()}")
    return None


_SUBMIT_CHECKS = (_packets, _registered_delivery, _msg_level, _service_id, _fee_user, _formats,
                  _msg_src, _fee, _times, _src_id, _destinations, _content)
