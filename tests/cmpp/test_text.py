"""Text encodings, long-message splitting and reassembly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cmpp
from cmpp.text import MsgFmt

ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=900)


# ----------------------------------------------------------------------------- encoding

def test_ascii_when_it_can_ucs2_otherwise():
    assert cmpp.encode_text("hello") == (MsgFmt.ASCII, b"hello")
    assert cmpp.encode_text("您好") == (MsgFmt.UCS2, "您好".encode("utf-16-be"))


def test_gbk_on_request():
    assert cmpp.encode_text("您好", msg_fmt=15) == (MsgFmt.GBK, "您好".encode("gbk"))


def test_ucs2_on_request_even_for_ascii():
    assert cmpp.encode_text("hi", msg_fmt=8) == (MsgFmt.UCS2, b"\x00h\x00i")


@pytest.mark.parametrize("text,msg_fmt", [("您好", 0), ("😀", 15)])
def test_text_that_the_format_cannot_carry_is_refused(text, msg_fmt):
    with pytest.raises(ValueError, match="cannot be written"):
        cmpp.encode_text(text, msg_fmt)


def test_binary_formats_carry_no_text():
    with pytest.raises(ValueError, match="does not carry text"):
        cmpp.encode_text("x", msg_fmt=4)
    assert cmpp.decode_text(b"\x01\x02", 4) is None


def test_decode_text_never_raises_on_bad_bytes():
    assert cmpp.decode_text(b"\xd8\x00", 8) == "\ufffd"
    assert cmpp.decode_text(b"\xff", 15) == "\ufffd"


# ----------------------------------------------------------------------------- splitting

def test_short_text_is_one_segment_without_udh():
    assert cmpp.split_text("hello") == [cmpp.Segment(0, 0, 1, 1, b"hello")]


def test_seventy_chinese_characters_fit_one_segment_and_seventy_one_do_not():
    assert len(cmpp.split_text("中" * 70)) == 1
    segments = cmpp.split_text("中" * 71, reference=9)
    assert [len(s.msg_content) for s in segments] == [6 + 134, 6 + 8]
    assert [(s.tp_udhi, s.pk_total, s.pk_number) for s in segments] == [(1, 2, 1), (1, 2, 2)]
    assert segments[0].msg_content[:6] == bytes([5, 0, 3, 9, 2, 1])


def test_ucs2_parts_hold_67_characters():
    segments = cmpp.split_text("中" * 200)
    assert [(len(s.msg_content) - 6) // 2 for s in segments] == [67, 67, 66]


def test_sixteen_bit_reference_leaves_66_characters():
    segments = cmpp.split_text("中" * 200, reference=0x1234, reference_bits=16)
    assert segments[0].msg_content[:7] == bytes([6, 8, 4, 0x12, 0x34, 4, 1])
    assert all(len(s.msg_content) <= 139 for s in segments)
    assert (len(segments[0].msg_content) - 7) // 2 == 66


def test_a_surrogate_pair_is_never_split():
    text = "中" * 66 + "😀" + "中" * 10
    for segment in cmpp.split_text(text):
        payload = cmpp.split_udh(segment.msg_content, segment.tp_udhi)[1]
        payload.decode("utf-16-be")          # raises if a pair was cut


def test_a_gbk_character_is_never_split():
    text = "a" + "中" * 200
    for segment in cmpp.split_text(text, msg_fmt=15):
        payload = cmpp.split_udh(segment.msg_content, segment.tp_udhi)[1]
        payload.decode("gbk")                # raises if a character was cut


def test_room_is_reserved_in_the_first_segment_for_a_signature():
    plain = cmpp.split_text("中" * 70)
    reserved = cmpp.split_text("中" * 70, reserve_first=len("【公司】".encode("utf-16-be")))
    assert len(plain) == 1 and len(reserved) == 2
    assert len(reserved[0].msg_content) == 6 + 134 - 8


def test_too_many_parts_is_refused():
    with pytest.raises(ValueError, match="needs 3 segments, at most 2"):
        cmpp.split_text("中" * 200, max_parts=2)


@pytest.mark.parametrize("kwargs", [dict(reference=256), dict(reference_bits=4),
                                    dict(max_parts=0), dict(reserve_first=140)])
def test_bad_split_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        cmpp.split_text("x" * 300, **kwargs)


def test_segments_become_submits_that_encode():
    for segment in cmpp.split_text("长短信" * 60, reference=3):
        pdu = cmpp.Submit(sequence_id=1, dest_terminal_ids=("13800138000",), **segment._asdict())
        assert cmpp.decode(cmpp.encode(pdu)) == pdu


# ----------------------------------------------------------------------------- reassembly

def mo_fields(segment: cmpp.Segment) -> dict:
    """A segment's fields that a DELIVER carries (it has no Pk_total/Pk_number)."""
    return dict(msg_fmt=segment.msg_fmt, tp_udhi=segment.tp_udhi, msg_content=segment.msg_content)


def delivers(text, source="13800138000", destination="10690001", reference=7, **kwargs):
    return [cmpp.Deliver(sequence_id=i, src_terminal_id=source, dest_id=destination,
                         **mo_fields(segment))
            for i, segment in enumerate(cmpp.split_text(text, reference=reference, **kwargs))]


@given(ANY_TEXT, st.sampled_from([None, 8, 15]), st.sampled_from([8, 16]), st.randoms())
@settings(max_examples=300)
def test_split_and_reassemble_round_trip_in_any_order(text, msg_fmt, bits, rnd):
    if msg_fmt == 15:
        try:
            text.encode("gbk")
        except UnicodeEncodeError:
            msg_fmt = 8
    parts = delivers(text, msg_fmt=msg_fmt, reference_bits=bits)
    rnd.shuffle(parts)
    reassembler = cmpp.Reassembler()
    done = [m for p in parts for m in reassembler.feed(p, now=0.0)]
    assert [m.text for m in done] == [text]
    assert reassembler.pending == 0


def test_duplicate_parts_are_ignored():
    parts = delivers("中" * 150)
    reassembler = cmpp.Reassembler()
    out = []
    for p in [parts[0], parts[0], parts[1], parts[1], parts[2], parts[2], parts[0]]:
        out += reassembler.feed(p, now=1.0)
    assert [m.text for m in out] == ["中" * 150]


def test_two_concurrent_messages_with_different_references_do_not_mix():
    a, b = delivers("甲" * 100, reference=1), delivers("乙" * 100, reference=2)
    reassembler = cmpp.Reassembler()
    out = [m for p in (a[0], b[1], b[0], a[1]) for m in reassembler.feed(p, now=0.0)]
    assert sorted(m.text for m in out) == ["乙" * 100, "甲" * 100]


def test_same_reference_from_two_senders_does_not_mix():
    a = delivers("甲" * 100, source="13800000001")
    b = delivers("乙" * 100, source="13800000002")
    reassembler = cmpp.Reassembler()
    out = [m for p in (a[0], b[0], b[1], a[1]) for m in reassembler.feed(p, now=0.0)]
    assert {m.source: m.text for m in out} == {"13800000001": "甲" * 100, "13800000002": "乙" * 100}


def test_incomplete_message_is_reported_on_expiry_not_dropped():
    parts = delivers("中" * 150)
    reassembler = cmpp.Reassembler(timeout=60)
    assert reassembler.feed(parts[0], now=100.0) == []
    assert reassembler.feed(parts[2], now=110.0) == []
    assert reassembler.next_expiry() == 160.0
    assert reassembler.expire(now=159.0) == []
    [expired] = reassembler.expire(now=160.0)
    assert not expired.complete and expired.missing == (2,)
    assert [p.sequence_id for p in expired.parts] == [0, 2]
    assert reassembler.pending == 0


def test_a_message_without_udh_is_returned_at_once():
    mo = cmpp.Deliver(sequence_id=1, src_terminal_id="13800138000", dest_id="10690001",
                      msg_content=b"TD")
    [message] = cmpp.Reassembler().feed(mo, now=0.0)
    assert message.text == "TD" and message.complete


def test_nonsense_part_number_is_delivered_as_is():
    content = bytes([5, 0, 3, 1, 2, 3]) + b"xx"          # part 3 of 2
    mo = cmpp.Deliver(sequence_id=1, tp_udhi=1, msg_content=content)
    [message] = cmpp.Reassembler().feed(mo, now=0.0)
    assert message.payload == b"xx"


def test_submits_reassemble_too():
    segments = cmpp.split_text("长" * 100, reference=5)
    submits = [cmpp.Submit(sequence_id=i, src_id="1069", dest_terminal_ids=("13800138000",),
                           **s._asdict()) for i, s in enumerate(segments)]
    random.Random(1).shuffle(submits)
    reassembler = cmpp.Reassembler()
    out = [m for s in submits for m in reassembler.feed(s, now=0.0)]
    assert [m.text for m in out] == ["长" * 100]


def test_mixed_formats_are_decoded_per_segment():
    first = cmpp.split_text("中" * 71, reference=4)[0]          # 67 + 4 characters
    second = cmpp.Deliver(sequence_id=2, tp_udhi=1, msg_fmt=0,
                          msg_content=bytes([5, 0, 3, 4, 2, 2]) + b"abc")
    first_pdu = cmpp.Deliver(sequence_id=1, **mo_fields(first))
    reassembler = cmpp.Reassembler()
    out = reassembler.feed(second, now=0) + reassembler.feed(first_pdu, now=0)
    assert [m.text for m in out] == ["中" * 67 + "abc"]
