"""Property tests: round trips, garbage in only CodecError out, any split of a stream."""

from __future__ import annotations

import dataclasses
import functools
import struct

import pytest
from construct import ConstructError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmpp
from cmpp.pdus import PDU_CLASSES
from tests.strategies import any_pdu, pdus_of
from tests.vectors import VECTORS

SEEDS = [bytes.fromhex(v["hex"]) for v in VECTORS if "report_content" not in v["name"]]


@functools.cache
def compiled_parser(cls):
    return cls.layout.compile().parse_from


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_every_pdu_type_round_trips(cls, data):
    pdu = data.draw(pdus_of(cls))
    frame = cmpp.encode(pdu)
    decoded = cmpp.decode(frame)
    assert decoded == pdu
    if isinstance(pdu, cmpp.Deliver):
        assert decoded.report == pdu.report
    assert cmpp.encode(decoded) == frame


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data(), sequence_id=st.integers(0, 0xFFFFFFFF))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_a_prepared_pdu_encodes_exactly_as_the_pdu_under_any_sequence_id(cls, data, sequence_id):
    pdu = data.draw(pdus_of(cls))
    prepared = cmpp.prepare(pdu)
    assert prepared == pdu and cmpp.encode(prepared) == cmpp.encode(pdu)
    again = prepared.with_sequence(sequence_id)
    assert again == pdu.with_sequence(sequence_id)
    assert cmpp.encode(again) == cmpp.encode(pdu.with_sequence(sequence_id))


def test_prepare_refuses_what_encode_refuses_and_a_bad_sequence_id_still_fails():
    too_long = cmpp.Submit(service_id="ELEVEN-CHARS", dest_terminal_ids=("1",))
    with pytest.raises(ValueError) as encoding:
        cmpp.encode(too_long)
    with pytest.raises(ValueError) as preparing:
        cmpp.prepare(too_long)
    assert str(preparing.value) == str(encoding.value) and "service_id" in str(encoding.value)
    prepared = cmpp.prepare(cmpp.Submit(dest_terminal_ids=("1",)))
    with pytest.raises(ValueError, match="sequence_id"):
        cmpp.encode(prepared.with_sequence(1 << 32))


def test_a_copy_with_other_values_is_encoded_from_its_own_values():
    prepared = cmpp.prepare(cmpp.Submit(dest_terminal_ids=("13800000001",)))
    other = dataclasses.replace(prepared, dest_terminal_ids=("13900000002",))
    assert cmpp.decode(cmpp.encode(other)).dest_terminal_ids == ("13900000002",)


@given(st.binary(max_size=400))
@settings(max_examples=1500)
def test_random_bytes_raise_nothing_but_codec_error(data):
    try:
        cmpp.decode(data)
    except cmpp.CodecError:
        pass


@given(st.sampled_from(SEEDS), st.data())
@settings(max_examples=1500)
def test_mutated_valid_frames_raise_nothing_but_codec_error(seed, data):
    frame = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(frame) - 1))
        frame[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):          # keep Total_Length honest so the body is reached
        frame[0:4] = struct.pack(">I", len(frame))
    try:
        cmpp.decode(bytes(frame))
    except cmpp.CodecError:
        pass


@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=30))
@settings(max_examples=800)
def test_frame_decoder_on_garbage_raises_nothing_but_codec_error(data, cuts):
    decoder = cmpp.FrameDecoder()
    at = 0
    for size in cuts + [len(data)]:
        try:
            decoder.feed(data[at:at + size])
        except cmpp.CodecError:
            pass
        at += size


@given(st.lists(any_pdu(), min_size=1, max_size=12), st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_stream_gives_the_same_pdus_whole_bytewise_and_in_random_splits(pdus, data):
    stream = b"".join(cmpp.encode(p) for p in pdus)
    whole = cmpp.FrameDecoder().feed(stream)
    decoder = cmpp.FrameDecoder()
    bytewise = [p for i in range(len(stream)) for p in decoder.feed(stream[i:i + 1])]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = cmpp.FrameDecoder()
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    split = [p for piece in pieces for p in decoder.feed(piece)]
    assert whole == bytewise == split == pdus


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_layout_agrees_with_interpreted_construct_on_valid_values(cls, data):
    pdu = data.draw(pdus_of(cls))
    body = cmpp.encode(pdu)[12:]
    assert cls.layout.build(dict(pdu.__dict__)) == body
    interpreted = cls.layout.parse(body)
    compiled, end = compiled_parser(cls)(body, 0)
    assert end == len(body)
    for name, value in compiled.items():
        expected = interpreted[name]
        assert (tuple(expected) if isinstance(value, tuple) else expected) == value


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
@given(body=st.binary(max_size=300))
@settings(max_examples=300)
def test_compiled_layout_fails_exactly_when_interpreted_construct_does(cls, body):
    try:
        compiled_parser(cls)(body, 0)
        compiled_ok = True
    except Exception:  # noqa: BLE001 - any failure of the fast path counts as a failure
        compiled_ok = False
    try:
        cls.layout.parse(body)
        interpreted_ok = True
    except ConstructError:
        interpreted_ok = False
    assert compiled_ok == interpreted_ok
