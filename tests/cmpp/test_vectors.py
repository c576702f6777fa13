"""Golden bytes: the 35 reference PDUs from public implementations (reference §19)."""

from __future__ import annotations

import pytest

import cmpp
from cmpp.pdus import CommandId
from tests.vectors import BY_NAME, VECTORS, expected_fields, is_cmpp2, is_report_body

CMPP2 = [v for v in VECTORS if is_cmpp2(v)]
FRAMES = [v for v in CMPP2 if not is_report_body(v)]
REPORT_BODIES = [v for v in CMPP2 if is_report_body(v)]
CMPP3 = [v for v in VECTORS if not is_cmpp2(v)]


def test_the_fixture_holds_all_35_vectors():
    assert len(VECTORS) == 35
    assert len(FRAMES) + len(REPORT_BODIES) + len(CMPP3) == 35


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_cmpp2_frame_decodes_to_the_listed_fields(vector):
    frame = bytes.fromhex(vector["hex"])
    pdu = cmpp.decode(frame)
    fields = vector["fields"]
    assert pdu.command_id == int(fields["Command_Id"], 16)
    assert CommandId(pdu.command_id).name == fields["command"].removeprefix("CMPP_")
    assert len(frame) == fields["Total_Length"]
    for name, value in expected_fields(vector).items():
        assert getattr(pdu, name) == value, name
    if "DestUsr_tl" in fields:
        destinations = pdu.dest_ids if isinstance(pdu, cmpp.Fwd) else pdu.dest_terminal_ids
        assert len(destinations) == fields["DestUsr_tl"]
    if "Msg_Length" in fields:
        assert len(pdu.msg_content) == fields["Msg_Length"]


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_cmpp2_frame_reencodes_to_the_same_bytes(vector):
    frame = bytes.fromhex(vector["hex"])
    assert cmpp.encode(cmpp.decode(frame)) == frame


@pytest.mark.parametrize("vector", FRAMES, ids=lambda v: v["name"])
def test_cmpp2_frame_built_from_its_fields_encodes_to_the_same_bytes(vector):
    frame = bytes.fromhex(vector["hex"])
    cls = type(cmpp.decode(frame))
    assert cmpp.encode(cls(**expected_fields(vector))) == frame


@pytest.mark.parametrize("vector", REPORT_BODIES, ids=lambda v: v["name"])
def test_report_body_decodes_and_reencodes(vector):
    body = bytes.fromhex(vector["hex"])
    report = cmpp.decode_report(body)
    for name, value in expected_fields(vector).items():
        assert getattr(report, name) == value, name
    assert cmpp.encode_report(report) == body


@pytest.mark.parametrize("vector", REPORT_BODIES, ids=lambda v: v["name"])
def test_report_body_inside_a_deliver_is_parsed(vector):
    body = bytes.fromhex(vector["hex"])
    deliver = cmpp.Deliver(sequence_id=1, msg_id=7, dest_id="10690001", registered_delivery=1,
                           src_terminal_id="13800138000", msg_content=body)
    decoded = cmpp.decode(cmpp.encode(deliver))
    assert decoded.report == cmpp.decode_report(body)
    assert len(cmpp.encode(deliver)) == 145      # 85 + 60 (§10)


@pytest.mark.parametrize("vector", CMPP3, ids=lambda v: v["name"])
def test_cmpp3_vector_is_refused_saying_it_is_cmpp3(vector):
    frame = bytes.fromhex(vector["hex"])
    with pytest.raises(cmpp.CodecError, match="CMPP 3.0") as caught:
        cmpp.decode(frame)
    assert caught.value.command_id == int(vector["fields"]["Command_Id"], 16)
    assert caught.value.sequence_id == vector["fields"]["Sequence_Id"]


@pytest.mark.parametrize("vector", [v for v in CMPP2 if "Msg_Id" in v["fields"]],
                         ids=lambda v: v["name"])
def test_msg_id_parts_match_the_vector(vector):
    expected = vector["fields"]["Msg_Id"]
    parts = cmpp.MsgId.unpack(expected["value"])
    assert parts == (expected["month"], expected["day"], expected["hour"], expected["minute"],
                     expected["second"], expected["gateway_code"], expected["sequence"])
    assert parts.pack() == expected["value"]


@pytest.mark.parametrize("name", ["cmpp2x_connect"])
def test_authenticator_source_matches_the_worked_example(name):
    check = BY_NAME[name]["fields"]["_auth_check"]
    pdu = cmpp.decode(bytes.fromhex(BY_NAME[name]["hex"]))
    computed = cmpp.authenticator_source(pdu.source_addr, check["shared_secret"], pdu.timestamp)
    assert computed.hex() == check["computed_AuthenticatorSource"] == pdu.authenticator_source.hex()


def test_authenticator_ismg_matches_the_worked_example():
    connect = cmpp.decode(bytes.fromhex(BY_NAME["cmpp2x_connect"]["hex"]))
    response = cmpp.decode(bytes.fromhex(BY_NAME["cmpp2x_connect_resp"]["hex"]))
    expected = cmpp.authenticator_ismg(response.status, connect.authenticator_source, "888888")
    assert response.authenticator_ismg == expected
    assert expected.hex() == "6c0b846e25bab6daa4ed1c466e0f4bd8"


def test_timestamp_keeps_its_leading_zero_in_the_md5():
    # 0x13acfedb = 330104539 -> "0330104539" (reference §6.1, vector cmpp20_connect_zero_auth)
    with_zero = cmpp.authenticator_source("935016", "secret", 330104539)
    import hashlib
    assert with_zero == hashlib.md5(b"935016" + bytes(9) + b"secret" + b"0330104539").digest()


@pytest.mark.parametrize("vector", [v for v in CMPP2 if isinstance(v["fields"].get("Msg_Content"), dict)
                                    and "udh" in v["fields"]["Msg_Content"]], ids=lambda v: v["name"])
def test_udh_elements_match_the_vector(vector):
    pdu = cmpp.decode(bytes.fromhex(vector["hex"]))
    content = vector["fields"]["Msg_Content"]
    elements, payload = cmpp.split_udh(pdu.msg_content, pdu.tp_udhi)
    assert [(f"{iei:02x}", data.hex()) for iei, data in elements] == \
        [(ie["iei"], ie["data"]) for ie in content["udh"]["ies"]]
    if "text" in content:
        assert cmpp.decode_text(payload, pdu.msg_fmt) == content["text"]


@pytest.mark.parametrize("vector", [v for v in CMPP2 if isinstance(v["fields"].get("Msg_Content"), dict)
                                    and "text" in v["fields"]["Msg_Content"]
                                    and "udh" not in v["fields"]["Msg_Content"]],
                         ids=lambda v: v["name"])
def test_text_matches_the_vector(vector):
    pdu = cmpp.decode(bytes.fromhex(vector["hex"]))
    assert cmpp.decode_text(pdu.msg_content, pdu.msg_fmt) == vector["fields"]["Msg_Content"]["text"]


@pytest.mark.parametrize("prefix,count", [("cmpp20_submit_10085_longsms_part", 3),
                                          ("cmpp20_submit_mixed_fmt_part", 4)])
def test_captured_long_messages_reassemble_in_any_order(prefix, count):
    parts = [v for v in VECTORS if v["name"].startswith(prefix)]
    assert len(parts) == count
    expected = "".join(v["fields"]["Msg_Content"]["text"] for v in parts)
    for order in (parts, parts[::-1], parts[1:] + parts[:1]):
        reassembler = cmpp.Reassembler()
        done = []
        for v in order:
            done += reassembler.feed(cmpp.decode(bytes.fromhex(v["hex"])), now=0.0)
        assert [m.text for m in done] == [expected]
        assert done[0].complete and reassembler.pending == 0
