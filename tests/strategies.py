"""Hypothesis strategies for valid values of every CMPP 2.0 PDU."""

from __future__ import annotations

from dataclasses import fields

from hypothesis import strategies as st

import cmpp
from cmpp.layout import Text
from cmpp.pdus import PDU_CLASSES

ASCII = st.characters(min_codepoint=1, max_codepoint=127)
u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)


def text(size: int):
    return st.text(ASCII, max_size=size)


def _text_sizes(layout) -> dict[str, int]:
    sizes = {}
    for sc in layout.subcons:
        inner = getattr(sc, "subcon", None)
        if isinstance(inner, Text):
            sizes[sc.name] = inner.length
    return sizes


_OVERRIDES = {
    "sequence_id": u32,
    "authenticator_source": st.binary(min_size=16, max_size=16),
    "authenticator_ismg": st.binary(min_size=16, max_size=16),
}
_INT_SIZES = {"msg_id": u64, "timestamp": u32, "smsc_sequence": u32}


def _field_strategy(cls, name: str, text_sizes: dict[str, int]):
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    if name in text_sizes:
        return text(text_sizes[name])
    if name in _INT_SIZES:
        return _INT_SIZES[name]
    if name.startswith(("mt_", "mo_")):
        return u32
    return u8


@st.composite
def _with_message(draw, cls, destinations_field: str):
    base = draw(_simple(cls, exclude={destinations_field, "msg_content", "msg_fmt"}))
    msg_fmt = draw(u8)
    limit = 159 if msg_fmt == 0 else 140
    return cls(**{**base.__dict__, "msg_fmt": msg_fmt,
                  destinations_field: tuple(draw(st.lists(text(21), min_size=1, max_size=99))),
                  "msg_content": draw(st.binary(max_size=limit))})


def reports():
    return st.builds(cmpp.StatusReport, msg_id=u64, stat=text(7), submit_time=text(10),
                     done_time=text(10), dest_terminal_id=text(21), smsc_sequence=u32)


@st.composite
def delivers(draw):
    common = dict(sequence_id=draw(u32), msg_id=draw(u64), dest_id=draw(text(21)),
                  service_id=draw(text(10)), tp_pid=draw(u8), tp_udhi=draw(u8),
                  src_terminal_id=draw(text(21)), reserve=draw(text(8)))
    if draw(st.booleans()):
        return cmpp.Deliver(**common, msg_fmt=draw(u8), report=draw(reports()))
    msg_fmt = draw(u8)
    content = draw(st.binary(max_size=159 if msg_fmt == 0 else 140))
    return cmpp.Deliver(**common, msg_fmt=msg_fmt, msg_content=content,
                        registered_delivery=draw(u8.filter(lambda v: v != 1)))


def _simple(cls, exclude=frozenset()):
    text_sizes = _text_sizes(cls.layout)
    names = [f.name for f in fields(cls) if f.name not in exclude and f.name != "report"]
    return st.builds(cls, **{n: _field_strategy(cls, n, text_sizes) for n in names})


def pdus_of(cls):
    if cls is cmpp.Submit:
        return _with_message(cls, "dest_terminal_ids")
    if cls is cmpp.Fwd:
        return _with_message(cls, "dest_ids")
    if cls is cmpp.Deliver:
        return delivers()
    return _simple(cls)


def any_pdu():
    return st.one_of([pdus_of(cls) for cls in PDU_CLASSES])
