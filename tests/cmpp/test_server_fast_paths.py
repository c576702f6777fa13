"""The server side's fast paths (cmpp.fastpath, and the responses' in cmpp.codec) against the
construct definitions: a SUBMIT read in two struct calls, a report's DELIVER built in one, a
SUBMIT_RESP or DELIVER_RESP read or packed in one are the very PDUs and bytes the wire layouts
give, and bytes they do not take still fail with CodecError only."""

from __future__ import annotations

import dataclasses
import random
from io import BytesIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmpp
from cmpp import fastpath, wire
from cmpp.session import Role, Session
from cmpp.states import State
from tests.strategies import ASCII, pdus_of, reports, text, u8, u32, u64

from .test_fast_paths import by_construct, encoded


def by_construct_submit(frame: bytes) -> dict | None:
    """A SUBMIT frame's fields as the interpreted construct layout parses them (the whole
    body, nothing left over); None when it refuses them."""
    stream = BytesIO(frame[12:])
    try:
        values = wire.SUBMIT.parse_stream(stream)
    except Exception:  # noqa: BLE001 - any refusal
        return None
    if stream.tell() != len(frame) - 12:
        return None
    fields = {f.name: values[f.name] for f in dataclasses.fields(cmpp.Submit)
              if f.name != "sequence_id"}
    fields["dest_terminal_ids"] = tuple(fields["dest_terminal_ids"])
    return fields


def fields_of(pdu: cmpp.Pdu) -> dict:
    return {k: v for k, v in pdu.__dict__.items() if k != "sequence_id"}


@given(pdu=pdus_of(cmpp.Submit))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_a_submit_is_read_as_the_layouts_parse_it(pdu):
    frame = cmpp.encode(pdu)
    for _ in range(2):                      # the second time from the shared fields read once
        fast = fastpath.decode_submit_frame(frame, 0, len(frame), pdu.sequence_id)
        assert fast is not None
        assert fast == pdu and repr(fast) == repr(pdu)
        assert fields_of(fast) == by_construct_submit(frame)
        assert type(fast.dest_terminal_ids) is tuple
        decoded = cmpp.decode(frame)
        assert list(decoded.__dict__.items()) == list(fast.__dict__.items())


SUBMIT_FRAME = cmpp.encode(cmpp.Submit(
    sequence_id=5, registered_delivery=1, service_id="SVC", msg_src="900001",
    src_id="106900001", dest_terminal_ids=("13800138000", "13900139000"), msg_content=b"hi"))


@given(changes=st.lists(st.tuples(st.integers(12, len(SUBMIT_FRAME) - 1), u8), max_size=6),
       resize=st.integers(-30, 30), prefix=st.binary(max_size=3))
@settings(max_examples=1500)
def test_any_submit_decodes_as_the_layouts_parse_it_or_fails_with_codec_error(changes, resize,
                                                                              prefix):
    cmpp.decode(SUBMIT_FRAME)                # its shared fields are known already
    frame = bytearray(SUBMIT_FRAME)
    for at, value in changes:
        frame[at] = value
    frame = frame[:len(frame) + resize] if resize < 0 else frame + bytes(resize)
    frame[0:4] = len(frame).to_bytes(4, "big")
    frame = bytes(frame)
    expected = by_construct_submit(frame)
    try:
        decoded = cmpp.decode(frame)
    except cmpp.CodecError:
        assert expected is None
        return
    assert fields_of(decoded) == expected
    data = prefix + frame                  # a frame in the middle of a read
    assert fastpath.decode_submit_frame(data, len(prefix), len(data), 5) in (None, decoded)


@st.composite
def field_bytes(draw, size: int):
    """``size`` bytes for a text field: mostly NUL padded ASCII or ASCII with NULs anywhere
    (both well formed: what follows the first NUL is not read), else bytes rich in NULs and in
    bytes above 0x7F."""
    kind = draw(st.integers(0, 5))
    if kind < 3:
        return draw(text(size)).encode().ljust(size, b"\0")
    alphabet = b"\0\0" + b"1A~" if kind < 5 else b"\0\0\0" + b"1A~\x80\xff"
    return bytes(draw(st.lists(st.sampled_from(alphabet), min_size=size, max_size=size)))


def mostly(value, *others):
    return st.sampled_from([value] * 4 + list(others))


@st.composite
def submit_bodies(draw):
    """SUBMIT bodies put together field by field, most of them well formed: a DestUsr_tl and
    a Msg_Length that may disagree with what follows, any Msg_Fmt, text fields with NULs and
    non-ASCII bytes anywhere, a Reserve cut short or run long, a body cut anywhere."""
    count = draw(st.integers(1, 3) | st.integers(0, 100))
    length = draw(st.integers(0, 140) | u8)
    msg_fmt = draw(st.sampled_from([0, 8, 15]) | u8)
    parts = [draw(st.binary(min_size=12, max_size=12)), draw(field_bytes(10)), bytes([draw(u8)]),
             draw(field_bytes(21)), bytes([draw(u8), draw(u8), msg_fmt])]
    parts += [draw(field_bytes(size)) for size in (6, 2, 6, 17, 17, 21)]
    parts.append(bytes([count]))
    actual = max(0, count + draw(mostly(0, -1, 1)))
    destinations = [draw(field_bytes(21)) for _ in range(min(actual, 4))]
    parts += (destinations * actual)[:actual]
    parts += [bytes([length]), bytes(max(0, length + draw(mostly(0, -1, 2))))]
    parts.append(draw(field_bytes(8))[:8 + draw(mostly(0, -1))] + bytes(draw(mostly(0, 1))))
    body = b"".join(parts)
    return body[:draw(st.integers(0, len(body)))] if draw(st.integers(0, 9)) == 0 else body


@given(body=submit_bodies(), sequence_id=u32)
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_any_submit_body_decodes_as_the_layouts_parse_it_or_fails_with_codec_error(
        body, sequence_id):
    frame = (12 + len(body)).to_bytes(4, "big") + (4).to_bytes(4, "big") \
        + sequence_id.to_bytes(4, "big") + body
    expected = by_construct_submit(frame)
    for _ in range(2):                      # the second time from the shared fields read once
        try:
            decoded = cmpp.decode(frame)
        except cmpp.CodecError:
            assert expected is None
            continue
        assert fields_of(decoded) == expected and decoded.sequence_id == sequence_id


def test_the_shared_fields_read_once_stay_bounded():
    template = cmpp.Submit(sequence_id=1, dest_terminal_ids=("13800138000",), msg_content=b"x")
    for n in range(fastpath._SHARED_LIMIT + 10):
        submit = dataclasses.replace(template, src_id=f"1069{n}")
        assert cmpp.decode(cmpp.encode(submit)) == submit
    assert len(fastpath._shared_fields) <= fastpath._SHARED_LIMIT


@given(msg_id=u64, report=reports(), dest_id=text(21), service_id=text(10),
       src_terminal_id=text(21), sequence_id=u32)
@settings(max_examples=300)
def test_a_report_deliver_is_the_deliver_and_encodes_as_the_layouts_do(
        msg_id, report, dest_id, service_id, src_terminal_id, sequence_id):
    plain = cmpp.Deliver(msg_id=msg_id, dest_id=dest_id, service_id=service_id,
                         src_terminal_id=src_terminal_id, report=report)
    made = cmpp.report_deliver(msg_id, report, dest_id=dest_id, service_id=service_id,
                               src_terminal_id=src_terminal_id)
    assert "_encoded_body" in made.__dict__            # prepared: its body is packed already
    assert made == plain and repr(made) == repr(plain) and made.report is report
    assert list(fields_of(made).items())[:-1] == list(fields_of(plain).items())
    assert cmpp.encode(made) == cmpp.encode(plain) == by_construct(plain)
    again = made.with_sequence(sequence_id)
    assert cmpp.encode(again) == by_construct(plain.with_sequence(sequence_id))


ANY_TEXT = st.one_of(       # around every text field's size: 7, 10 and 21
    st.sampled_from([0, 3, 7, 8, 10, 11, 21, 22]).flatmap(
        lambda n: st.text(ASCII, min_size=n, max_size=n)),
    st.text(max_size=3), st.sampled_from([None, 7, b"bytes"]))
ANY_INT = st.one_of(u64, st.integers(-3, 2**64 + 3), st.sampled_from([True, 1.0, None, "1"]))


REPORT_TEXTS = {"stat": 7, "submit_time": 10, "done_time": 10, "dest_terminal_id": 21}
DELIVER_TEXTS = {"dest_id": 21, "service_id": 10, "src_terminal_id": 21}


def around(size: int):
    """Text of the field's size or one more, or anything."""
    return st.one_of(st.sampled_from([size, size + 1]).flatmap(
        lambda n: st.text(ASCII, min_size=n, max_size=n)), ANY_TEXT)


@st.composite
def report_delivers(draw):
    """report_deliver's arguments: well formed ones with one or two of them made anything."""
    values = {"msg_id": draw(u64), **{name: draw(text(size))
                                      for name, size in DELIVER_TEXTS.items()}}
    report = {"msg_id": draw(u64), "smsc_sequence": draw(u32),
              **{name: draw(text(size)) for name, size in REPORT_TEXTS.items()}}
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(["report", *values, *(f"report.{n}" for n in report)]))
        if name == "report":
            values["report"] = draw(st.sampled_from([None, "report", ("a",)]))
        elif name.startswith("report."):
            name = name.split(".")[1]
            report[name] = draw(ANY_INT if name in ("msg_id", "smsc_sequence")
                                else around(REPORT_TEXTS[name]))
        else:
            values[name] = draw(ANY_INT if name == "msg_id" else around(DELIVER_TEXTS[name]))
    values.setdefault("report", cmpp.StatusReport(**report))
    return values


def built(make):
    """What ``make`` returns, or the type and text of what it raises."""
    try:
        return make()
    except Exception as error:  # noqa: BLE001 - whatever the plain Deliver raises
        return type(error), str(error)


@given(values=report_delivers())
@settings(max_examples=1000)
def test_a_report_deliver_that_does_not_fit_fails_as_the_deliver_does(values):
    plain = built(lambda: cmpp.Deliver(**values))
    msg_id, report = values.pop("msg_id"), values.pop("report")
    made = built(lambda: cmpp.report_deliver(msg_id, report, **values))
    if isinstance(plain, tuple):
        assert made == plain
        return
    assert made == plain and made.report is plain.report
    assert encoded(made) == encoded(plain)


@given(command=st.sampled_from([cmpp.SubmitResp, cmpp.DeliverResp]),
       body=st.binary(min_size=9, max_size=9), sequence_id=u32)
def test_a_submit_resp_or_deliver_resp_is_read_as_the_layout_parses_it(command, body,
                                                                      sequence_id):
    frame = (21).to_bytes(4, "big") + command.command_id.to_bytes(4, "big") \
        + sequence_id.to_bytes(4, "big") + body
    decoded = cmpp.decode(frame)
    values = command.layout.parse(body)
    assert type(decoded) is command
    assert decoded.__dict__ == {"msg_id": values.msg_id, "result": values.result,
                                "sequence_id": sequence_id}


@given(sequence_id=u32, msg_id=st.one_of(u64, st.integers(-2, 2**64 + 2)),
       result=st.one_of(u8, st.integers(-2, 300)))
@settings(max_examples=300)
def test_a_submit_resp_is_packed_as_the_layout_builds_it(sequence_id, msg_id, result):
    session = Session(Role.SERVER)
    session.state = State.ESTABLISHED
    answer = cmpp.SubmitResp(sequence_id, msg_id, result)
    try:
        expected = by_construct(answer)
    except Exception:  # noqa: BLE001 - a value that does not fit: respond raises as encode
        with pytest.raises(ValueError) as error:
            session.respond(answer)
        assert str(error.value) == encoded(answer)
        assert session.data_to_send() == b""
        return
    session.respond(answer)
    assert session.data_to_send() == expected == cmpp.encode(answer)


@pytest.mark.parametrize("seed", [0, 7, 2026])
def test_report_sequences_are_drawn_as_randrange_draws_them(seed):
    from gateway.sim import Simulator, SimulatorConfig
    sim = Simulator(SimulatorConfig(seed=seed))
    submit = cmpp.Submit(dest_terminal_ids=tuple(f"1380013800{n}" for n in range(10)))
    delivers = sim._reports(submit, 1 << 40)
    same = random.Random(seed)
    assert [d.report.smsc_sequence for d in delivers] == [same.randrange(1 << 32)
                                                          for _ in delivers]
    assert all("_encoded_body" in d.__dict__ for d in delivers)
