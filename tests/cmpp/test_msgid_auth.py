"""Msg_Id packing and the login arithmetic."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cmpp


def test_msg_id_worked_example():
    # b2b9da8000010000: 11-05 14:29:42, gateway 1, sequence 0 (reference §13)
    assert cmpp.MsgId.unpack(0xB2B9DA8000010000) == cmpp.MsgId(11, 5, 14, 29, 42, 1, 0)
    assert cmpp.MsgId(11, 5, 14, 29, 42, 1, 0).pack() == 0xB2B9DA8000010000


@given(st.integers(0, (1 << 64) - 1))
def test_msg_id_unpack_then_pack_is_identity(value):
    assert cmpp.MsgId.unpack(value).pack() == value


@pytest.mark.parametrize("parts", [(16, 1, 0, 0, 0, 0, 0), (1, 1, 0, 0, 0, 1 << 22, 0),
                                   (1, 1, 0, 0, 0, 0, 1 << 16), (1, 1, 0, 0, -1, 0, 0)])
def test_msg_id_part_out_of_range_is_refused(parts):
    with pytest.raises(ValueError, match="does not fit"):
        cmpp.MsgId(*parts).pack()


def test_msg_id_outside_64_bits_is_refused():
    with pytest.raises(ValueError):
        cmpp.MsgId.unpack(1 << 64)


def test_mass_send_ids_wrap_in_the_low_16_bits():
    base = cmpp.MsgId(11, 5, 14, 29, 42, 1, 0xFFFE).pack()
    assert cmpp.MsgId.unpack(cmpp.nth_of_mass_send(base, 1)).sequence == 0xFFFF
    wrapped = cmpp.MsgId.unpack(cmpp.nth_of_mass_send(base, 3))
    assert wrapped.sequence == 1 and wrapped.gateway == 1 and wrapped.second == 42


def test_timestamp_is_mmddhhmmss():
    assert cmpp.timestamp(datetime(2026, 10, 21, 8, 5, 10)) == 1021080510
    assert cmpp.timestamp(datetime(2026, 3, 30, 10, 45, 39)) == 330104539


def test_authenticator_source_formula():
    expected = hashlib.md5(b"900001" + bytes(9) + b"888888" + b"1021080510").digest()
    assert cmpp.authenticator_source("900001", "888888", 1021080510) == expected
    assert cmpp.authenticator_source("900001", b"888888", 1021080510) == expected


def test_authenticator_ismg_hashes_a_one_byte_status():
    source = bytes(range(16))
    assert cmpp.authenticator_ismg(3, source, "pw") == hashlib.md5(b"\x03" + source + b"pw").digest()
    with pytest.raises(ValueError):
        cmpp.authenticator_ismg(256, source, "pw")


def test_timestamp_out_of_range_is_refused():
    with pytest.raises(ValueError):
        cmpp.authenticator_source("900001", "x", 10_000_000_000)
