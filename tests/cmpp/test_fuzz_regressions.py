"""Every input the fuzzer ever crashed on, replayed: only CodecError may come out."""

from __future__ import annotations

from pathlib import Path

import pytest

import cmpp

REGRESSIONS = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "fuzz-regressions").glob("*"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_crash_input_raises_nothing_but_codec_error(path):
    data = path.read_bytes()
    try:
        pdu = cmpp.decode(data)
    except cmpp.CodecError:
        pdu = None
    if pdu is not None:
        assert cmpp.decode(cmpp.encode(pdu)) == pdu
    decoder = cmpp.FrameDecoder()
    for i in range(len(data)):
        try:
            decoder.feed(data[i:i + 1])
        except cmpp.CodecError as error:
            if error.fatal:
                break
