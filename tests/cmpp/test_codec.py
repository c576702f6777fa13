"""encode, decode and FrameDecoder: tolerances, limits, and the errors a caller sees."""

from __future__ import annotations

import struct

import pytest

import cmpp
from cmpp.pdus import CommandId


def submit(**fields) -> cmpp.Submit:
    values = dict(sequence_id=1, dest_terminal_ids=("13800138000",), msg_content=b"hi",
                  src_id="10690001", msg_src="900001")
    values.update(fields)
    return cmpp.Submit(**values)


def frame(command_id: int, sequence_id: int, body: bytes) -> bytes:
    return struct.pack(">III", 12 + len(body), command_id, sequence_id) + body


# ----------------------------------------------------------------------------- defaults

def test_a_submit_needs_only_its_recipients_and_content():
    pdu = cmpp.decode(cmpp.encode(cmpp.Submit(sequence_id=1, dest_terminal_ids=("13800138000",),
                                              msg_content=b"hi")))
    assert pdu.dest_terminal_ids == ("13800138000",) and pdu.msg_content == b"hi"
    assert pdu.registered_delivery == 1      # receipts are asked for unless told otherwise
    assert pdu.pk_total == pdu.pk_number == 1


def test_submit_length_follows_the_spec_formula():
    for count, size in ((1, 0), (2, 140), (99, 70)):
        pdu = submit(dest_terminal_ids=tuple(f"138{i:08d}" for i in range(count)),
                     msg_content=bytes(size), msg_fmt=8)
        assert len(cmpp.encode(pdu)) == 138 + 21 * count + size


def test_fixed_sizes_of_the_small_pdus():
    sizes = {cmpp.Connect: 39, cmpp.ConnectResp: 30, cmpp.Terminate: 12,
             cmpp.TerminateResp: 12, cmpp.ActiveTest: 12, cmpp.ActiveTestResp: 13,
             cmpp.SubmitResp: 21, cmpp.DeliverResp: 21, cmpp.Query: 39, cmpp.QueryResp: 63,
             cmpp.Cancel: 20, cmpp.CancelResp: 13, cmpp.FwdResp: 23}
    for cls, size in sizes.items():
        assert len(cmpp.encode(cls(sequence_id=5))) == size, cls.__name__


def test_deliver_built_from_a_report_carries_its_60_byte_body():
    report = cmpp.StatusReport(msg_id=42, stat="DELIVRD", submit_time="2611221200",
                               done_time="2611221201", dest_terminal_id="13800138000",
                               smsc_sequence=9)
    pdu = cmpp.Deliver(sequence_id=3, msg_id=77, report=report)
    assert pdu.registered_delivery == 1 and len(pdu.msg_content) == 60
    decoded = cmpp.decode(cmpp.encode(pdu))
    assert decoded.report == report and decoded.msg_id == 77


def test_mo_deliver_has_no_report():
    pdu = cmpp.decode(cmpp.encode(cmpp.Deliver(sequence_id=1, msg_content=b"TD")))
    assert pdu.report is None


def test_is_response_follows_the_command_id_bit():
    assert cmpp.SubmitResp().is_response and not cmpp.Submit().is_response


# ----------------------------------------------------------------------------- tolerances

def test_twelve_byte_active_test_resp_is_accepted():
    pdu = cmpp.decode(frame(CommandId.ACTIVE_TEST_RESP, 9, b""))
    assert pdu == cmpp.ActiveTestResp(sequence_id=9, reserved=0)


def test_version_0x21_connect_is_decoded():
    pdu = cmpp.Connect(sequence_id=1, source_addr="900001", version=0x21, timestamp=1021080510)
    assert cmpp.decode(cmpp.encode(pdu)).version == 0x21


@pytest.mark.parametrize("result", range(0, 14))
def test_submit_resp_result_codes_0_to_13_decode(result):
    pdu = cmpp.decode(cmpp.encode(cmpp.SubmitResp(sequence_id=1, msg_id=5, result=result)))
    assert pdu.result == result == cmpp.SubmitResult(result)


def test_unknown_result_code_still_decodes():
    assert cmpp.decode(cmpp.encode(cmpp.SubmitResp(sequence_id=1, result=200))).result == 200


def test_seventy_one_byte_report_is_parsed_with_the_wider_destination():
    body = (struct.pack(">Q", 99) + b"DELIVRD" + b"2611221200" + b"2611221201"
            + b"8613800138000".ljust(32, b"\0") + struct.pack(">I", 7))
    deliver = cmpp.decode(cmpp.encode(cmpp.Deliver(sequence_id=1, registered_delivery=1,
                                                   msg_content=body)))
    assert len(body) == 71
    assert deliver.report == cmpp.StatusReport(99, "DELIVRD", "2611221200", "2611221201",
                                               "8613800138000", 7)


@pytest.mark.parametrize("tp_udhi", [1, 0x40, 0x41])
def test_udh_is_found_when_tp_udhi_has_bit_0_or_0x40(tp_udhi):
    elements, payload = cmpp.split_udh(b"\x05\x00\x03\x07\x02\x01abc", tp_udhi)
    assert elements == [(0, b"\x07\x02\x01")] and payload == b"abc"


def test_no_udh_when_tp_udhi_is_zero():
    assert cmpp.split_udh(b"\x05\x00\x03\x07\x02\x01abc", 0) == ([], b"\x05\x00\x03\x07\x02\x01abc")


def test_full_text_field_has_no_terminator():
    report = cmpp.StatusReport(stat="DELIVRD", submit_time="2611221200", done_time="2611221201")
    body = cmpp.encode_report(report)
    assert body[8:15] == b"DELIVRD" and cmpp.decode_report(body).stat == "DELIVRD"


def test_text_field_is_cut_at_the_first_nul():
    body = bytearray(cmpp.encode_report(cmpp.StatusReport(stat="DELIVRD")))
    body[8:15] = b"MK\0junk"
    assert cmpp.decode_report(bytes(body)).stat == "MK"


# ----------------------------------------------------------------------------- encode errors

@pytest.mark.parametrize("fields,field,reason", [
    (dict(src_id="1" * 22), "src_id", "22 bytes, the field holds 21"),
    (dict(service_id="服务"), "service_id", "not ASCII"),
    (dict(dest_terminal_ids=()), "DestUsr_tl", "1..99"),
    (dict(dest_terminal_ids=tuple(["13800138000"] * 100)), "DestUsr_tl", "1..99"),
    (dict(dest_terminal_ids=("1" * 22,)), "dest_terminal_ids", "21"),
    (dict(msg_fmt=8, msg_content=bytes(141)), "Msg_Length", "140"),
    (dict(msg_fmt=0, msg_content=bytes(160)), "Msg_Length", "159"),
    (dict(pk_total=256), "pk_total", "256"),
    (dict(msg_id=-1), "msg_id", "-1"),
    (dict(service_id=b"bytes"), "service_id", "expected text"),
])
def test_encoding_a_value_that_does_not_fit_names_the_field(fields, field, reason):
    with pytest.raises(ValueError) as caught:
        cmpp.encode(submit(**fields))
    assert not isinstance(caught.value, cmpp.CodecError)
    assert f"Submit.{field}" in str(caught.value) or field in str(caught.value)
    assert reason in str(caught.value)


def test_ascii_content_may_be_159_bytes():
    assert len(cmpp.decode(cmpp.encode(submit(msg_fmt=0, msg_content=b"a" * 159))).msg_content) == 159


def test_sequence_id_must_fit_four_bytes():
    with pytest.raises(ValueError, match="sequence_id"):
        cmpp.encode(cmpp.ActiveTest(sequence_id=1 << 32))


def test_content_must_be_bytes():
    with pytest.raises(ValueError, match="Submit"):
        cmpp.encode(submit(msg_content="text"))
    with pytest.raises(ValueError, match="Submit"):
        cmpp.encode(submit(msg_content=5))


def test_authenticator_must_be_16_bytes():
    with pytest.raises(ValueError, match="authenticator_source"):
        cmpp.encode(cmpp.Connect(authenticator_source=b"short"))


def test_report_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="StatusReport.stat"):
        cmpp.encode_report(cmpp.StatusReport(stat="UNDELIVRD"))


# ----------------------------------------------------------------------------- decode errors

def test_short_frame_is_refused():
    with pytest.raises(cmpp.CodecError, match="shorter than the 12-byte header"):
        cmpp.decode(b"\x00\x00\x00\x0c")


def test_total_length_must_match_the_frame():
    with pytest.raises(cmpp.CodecError) as caught:
        cmpp.decode(frame(CommandId.ACTIVE_TEST, 1, b"") + b"x")
    assert caught.value.field == "Total_Length"


def test_unknown_command_id_carries_the_id_and_sequence():
    with pytest.raises(cmpp.CodecError) as caught:
        cmpp.decode(frame(0x00000003, 4242, b""))
    assert (caught.value.command_id, caught.value.sequence_id) == (3, 4242)
    assert caught.value.field == "Command_Id" and "unknown Command_Id" in str(caught.value)


@pytest.mark.parametrize("cut,field", [(5, "reserve"), (20, "dest_terminal_ids")])
def test_truncated_body_names_the_field(cut, field):
    whole = cmpp.encode(submit())        # ... Dest_terminal_Id(21) Msg_Length(1) "hi" Reserve(8)
    with pytest.raises(cmpp.CodecError) as caught:
        cmpp.decode(frame(CommandId.SUBMIT, 1, whole[12:-cut]))
    assert caught.value.field == field and caught.value.command_id == CommandId.SUBMIT


def test_bytes_after_the_last_field_are_refused():
    with pytest.raises(cmpp.CodecError, match="1 bytes after the last field of SUBMIT_RESP"):
        cmpp.decode(frame(CommandId.SUBMIT_RESP, 1, bytes(10)))


def test_non_ascii_text_field_names_the_field():
    body = bytearray(cmpp.encode(submit())[12:])
    body[95] = 0xB9                      # first byte of Src_Id (§8 offset 95)
    with pytest.raises(cmpp.CodecError) as caught:
        cmpp.decode(frame(CommandId.SUBMIT, 1, bytes(body)))
    assert caught.value.field == "src_id" and "non-ASCII" in caught.value.reason


def test_destination_count_over_99_is_refused_on_decode():
    body = bytearray(cmpp.encode(submit())[12:])
    body[116] = 100                      # DestUsr_tl
    with pytest.raises(cmpp.CodecError, match="DestUsr_tl must be 1..99"):
        cmpp.decode(frame(CommandId.SUBMIT, 1, bytes(body)))


def test_report_of_the_wrong_size_is_refused():
    body = cmpp.encode(cmpp.Deliver(sequence_id=1, msg_content=bytes(59)))[12:]
    body = body[:63] + b"\x01" + body[64:]      # Registered_Delivery = 1 with 59 bytes
    with pytest.raises(cmpp.CodecError, match="60 or 71"):
        cmpp.decode(frame(CommandId.DELIVER, 1, body))


def test_codec_error_is_a_value_error_with_its_parts():
    error = cmpp.CodecError("bad", field="x", command_id=4, sequence_id=2)
    assert isinstance(error, ValueError)
    assert str(error) == "command 0x00000004, sequence 2, field x: bad"


# ----------------------------------------------------------------------------- streams

def stream_of(*pdus) -> bytes:
    return b"".join(cmpp.encode(p) for p in pdus)


def test_frame_decoder_returns_whole_pdus_only():
    data = stream_of(cmpp.ActiveTest(sequence_id=1), submit(sequence_id=2))
    decoder = cmpp.FrameDecoder()
    assert decoder.feed(data[:20]) == [cmpp.ActiveTest(sequence_id=1)]
    assert decoder.buffered == 8
    assert decoder.feed(data[20:]) == [submit(sequence_id=2)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("length", [0, 11, 4097, 0xFFFFFFFF])
def test_bad_total_length_is_refused_from_four_bytes(length):
    decoder = cmpp.FrameDecoder()
    with pytest.raises(cmpp.CodecError) as caught:
        decoder.feed(struct.pack(">I", length))
    assert caught.value.fatal and caught.value.field == "Total_Length"
    with pytest.raises(cmpp.CodecError):
        decoder.feed(cmpp.encode(cmpp.ActiveTest()))     # framing is lost for good


def test_maximum_length_is_configurable():
    big = submit(dest_terminal_ids=tuple(f"138{i:08d}" for i in range(99)), msg_content=bytes(140),
                 msg_fmt=8)
    data = cmpp.encode(big)
    assert len(data) == 2357
    assert cmpp.FrameDecoder().feed(data) == [big]
    with pytest.raises(cmpp.CodecError, match="outside"):
        cmpp.FrameDecoder(max_length=2000).feed(data[:4])


def test_a_bad_frame_after_good_ones_loses_nothing():
    bad = frame(0x00000003, 7, b"")
    data = stream_of(cmpp.ActiveTest(sequence_id=1)) + bad + stream_of(cmpp.ActiveTest(sequence_id=2))
    decoder = cmpp.FrameDecoder()
    assert decoder.feed(data) == [cmpp.ActiveTest(sequence_id=1)]
    with pytest.raises(cmpp.CodecError) as caught:
        decoder.feed(b"")
    assert caught.value.sequence_id == 7 and not caught.value.fatal
    assert decoder.feed(b"") == [cmpp.ActiveTest(sequence_id=2)]


def test_a_bad_frame_first_is_raised_at_once_and_the_stream_goes_on():
    decoder = cmpp.FrameDecoder()
    with pytest.raises(cmpp.CodecError):
        decoder.feed(frame(0x00000003, 7, b"") + cmpp.encode(cmpp.ActiveTest(sequence_id=2)))
    assert decoder.feed(b"") == [cmpp.ActiveTest(sequence_id=2)]


def test_frame_decoder_rejects_a_maximum_below_the_header():
    with pytest.raises(ValueError):
        cmpp.FrameDecoder(max_length=11)


def test_pdus_are_frozen_and_take_positional_or_keyword_arguments():
    import dataclasses
    by_position = cmpp.SubmitResp(7, 99, 8)
    assert by_position == cmpp.SubmitResp(sequence_id=7, msg_id=99, result=8)
    assert cmpp.SubmitResp() == cmpp.SubmitResp(0, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_position.result = 0
    with pytest.raises(TypeError):
        cmpp.SubmitResp(7, 99, 8, 1)
    assert dataclasses.replace(by_position, result=0).result == 0
    assert cmpp.Deliver(report=cmpp.StatusReport(stat="DELIVRD")).registered_delivery == 1
