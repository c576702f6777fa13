"""The reference vectors (fixtures/cmpp2-vectors.json) and how their field names map to ours."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VECTORS = json.loads((FIXTURES / "cmpp2-vectors.json").read_text(encoding="utf-8"))
BY_NAME = {v["name"]: v for v in VECTORS}

# The vectors' spec spelling -> our snake_case field. None: a count or length that the codec
# derives (checked against the tuple or bytes it describes), or header/meta keys.
FIELD_NAMES = {
    "Source_Addr": "source_addr", "AuthenticatorSource": "authenticator_source",
    "Version": "version", "Timestamp": "timestamp", "Status": "status",
    "AuthenticatorISMG": "authenticator_ismg", "Msg_Id": "msg_id", "Pk_total": "pk_total",
    "Pk_number": "pk_number", "Registered_Delivery": "registered_delivery",
    "Msg_level": "msg_level", "Service_Id": "service_id", "Fee_UserType": "fee_user_type",
    "Fee_terminal_Id": "fee_terminal_id", "TP_pId": "tp_pid", "TP_pid": "tp_pid",
    "TP_udhi": "tp_udhi", "Msg_Fmt": "msg_fmt", "Msg_src": "msg_src", "FeeType": "fee_type",
    "FeeCode": "fee_code", "ValId_Time": "valid_time", "Valid_Time": "valid_time",
    "At_Time": "at_time", "Src_Id": "src_id", "Dest_terminal_Id": "dest_terminal_ids",
    "Msg_Content": "msg_content", "Reserve": "reserve", "Reserved": "reserved", "Result": "result",
    "Src_terminal_Id": "src_terminal_id", "Source_Id": "source_id",
    "Destination_Id": "destination_id", "NodesCount": "nodes_count",
    "Msg_Fwd_Type": "msg_fwd_type", "Stat": "stat", "Submit_time": "submit_time",
    "Done_time": "done_time", "SMSC_sequence": "smsc_sequence",
    "Sequence_Id": "sequence_id",
    "DestUsr_tl": None, "Msg_Length": None, "Total_Length": None, "Command_Id": None,
    "command": None, "Timestamp_str": None,
}


def is_cmpp2(vector: dict) -> bool:
    return not vector["name"].startswith("cmpp30")


def is_report_body(vector: dict) -> bool:
    return "report_content" in vector["name"]


def expected_fields(vector: dict) -> dict:
    """The vector's decoded fields, in our names and types."""
    out = {}
    for key, value in vector["fields"].items():
        if key.startswith("_"):
            continue
        if key == "Dest_Id":   # DELIVER's Dest_Id is text, FWD's is the destination list
            key, value = ("dest_ids", tuple(value)) if isinstance(value, list) else ("dest_id", value)
            out[key] = value
            continue
        if key == "Dest_terminal_Id" and isinstance(value, str):   # the report's one number
            out["dest_terminal_id"] = value
            continue
        name = FIELD_NAMES[key]
        if name is None:
            continue
        out[name] = _convert(name, value)
    return out


def _convert(name: str, value):
    if name == "msg_id":
        return value["value"]
    if name == "msg_content":
        return bytes.fromhex(value["hex"])
    if name in ("authenticator_source", "authenticator_ismg"):
        return bytes.fromhex(value)
    if name == "version":
        return int(value, 16)
    if name == "dest_terminal_ids":
        return tuple(value)
    return value
