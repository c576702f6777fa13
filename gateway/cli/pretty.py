"""Readable renderings of PDUs for people: field per line, Msg_Ids split, text decoded."""

from __future__ import annotations

from dataclasses import fields

import cmpp
from cmpp.pdus import CommandId


def describe(pdu: cmpp.Pdu) -> str:
    """A multi-line description of ``pdu`` (content is shown: use it on fixtures and test data,
    never in the daemon's logs)."""
    lines = [f"{CommandId(pdu.command_id).name} (0x{pdu.command_id:08X}), "
             f"sequence {pdu.sequence_id}"]
    for f in fields(pdu):
        if f.name in ("sequence_id", "report"):
            continue
        lines += _field_lines(pdu, f.name, getattr(pdu, f.name))
    report = getattr(pdu, "report", None)
    if report is not None:
        lines.append("  status report:")
        lines += ["  " + line for f in fields(report)
                  for line in _field_lines(report, f.name, getattr(report, f.name))]
    return "\n".join(lines)


def _field_lines(owner, name: str, value) -> list[str]:
    if name == "msg_id":
        return [f"  msg_id: {value} ({describe_msg_id(value)})"]
    if name == "msg_content":
        return [f"  msg_content: {len(value)} bytes", *describe_content(owner, value)]
    if isinstance(value, bytes):
        return [f"  {name}: {value.hex()}"]
    if isinstance(value, tuple):
        return [f"  {name}: {', '.join(value)}"]
    return [f"  {name}: {value!r}" if isinstance(value, str) else f"  {name}: {value}"]


def describe_msg_id(value: int) -> str:
    p = cmpp.MsgId.unpack(value)
    return (f"{p.month:02d}-{p.day:02d} {p.hour:02d}:{p.minute:02d}:{p.second:02d}, "
            f"gateway {p.gateway}, sequence {p.sequence}")


def describe_content(pdu, content: bytes) -> list[str]:
    if getattr(pdu, "report", None) is not None:
        return []
    elements, payload = cmpp.split_udh(content, getattr(pdu, "tp_udhi", 0))
    lines = [f"    UDH element 0x{iei:02X}: {data.hex()}" for iei, data in elements]
    text = cmpp.decode_text(payload, getattr(pdu, "msg_fmt", 4))
    lines.append(f"    text: {text!r}" if text is not None else f"    binary: {payload.hex()}")
    return lines
