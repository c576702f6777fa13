"""The codec's fast paths against the construct definitions: a SUBMIT from a template, and
a DELIVER_RESP packed at once, are the very PDUs and bytes the wire layouts give."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cmpp
from cmpp import wire
from cmpp.session import Role, Session
from cmpp.states import State
from tests.strategies import ASCII, pdus_of, u8, u32, u64

OWN = ("dest_terminal_ids", "msg_content", "msg_fmt", "tp_udhi", "pk_total", "pk_number",
       "msg_level")


def by_construct(pdu: cmpp.Pdu) -> bytes:
    """The frame as the interpreted construct layout builds it (no compiled code)."""
    body = pdu.layout.build(dict(pdu.__dict__))
    return wire.HEADER.build(dict(total_length=12 + len(body), command_id=pdu.command_id,
                                  sequence_id=pdu.sequence_id)) + body


def split(pdu: cmpp.Submit) -> tuple[cmpp.SubmitTemplate, dict]:
    """A template of ``pdu``'s shared fields (with other destinations and content), and its own."""
    shared = cmpp.Submit(**{k: v for k, v in pdu.__dict__.items() if k not in OWN},
                         dest_terminal_ids=("x",), msg_content=b"other")
    return cmpp.SubmitTemplate(shared), {k: pdu.__dict__[k] for k in OWN}


def encoded(pdu: cmpp.Pdu) -> bytes | str:
    try:
        return cmpp.encode(pdu)
    except ValueError as error:
        return str(error)


@given(pdu=pdus_of(cmpp.Submit), sequence_id=u32)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_templated_submit_is_the_submit_and_encodes_as_the_layout_does(pdu, sequence_id):
    template, own = split(pdu)
    own["dest_terminal_ids"] = tuple(own["dest_terminal_ids"])
    made = template.submit(**own)
    assert "_encoded_body" in made.__dict__          # prepared: its body is packed already
    assert made == pdu and repr(made) == repr(pdu)
    assert cmpp.encode(made) == cmpp.encode(pdu) == by_construct(pdu)
    again = made.with_sequence(sequence_id)
    assert again == pdu.with_sequence(sequence_id)
    assert cmpp.encode(again) == by_construct(pdu.with_sequence(sequence_id))


ANY_INT = st.one_of(u8, st.integers(-3, 300), st.sampled_from([True, 1.0, None, "1"]))
ANY_DESTS = st.one_of(
    st.lists(st.text(ASCII, max_size=23), min_size=0, max_size=101).map(tuple),
    st.lists(st.text(max_size=22), min_size=1, max_size=3).map(tuple),
    st.lists(st.text(ASCII, max_size=21), min_size=1, max_size=3),          # a list
    st.sampled_from([("1", 2), (b"138",), "13800138000", None]))
ANY_CONTENT = st.one_of(st.binary(max_size=165), st.binary(max_size=150).map(bytearray),
                        st.sampled_from(["text", None, memoryview(b"abc")]))


@given(pdu=pdus_of(cmpp.Submit), data=st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_a_templated_submit_that_does_not_fit_fails_as_the_submit_does(pdu, data):
    template, _ = split(pdu)
    own = dict(dest_terminal_ids=data.draw(ANY_DESTS), msg_content=data.draw(ANY_CONTENT),
               **{name: data.draw(ANY_INT) for name in OWN[2:]})
    plain = cmpp.Submit(**{**pdu.__dict__, **own})
    made = template.submit(**own)
    assert made.__dict__.keys() - {"_encoded_body"} == plain.__dict__.keys()
    assert all(made.__dict__[k] is plain.__dict__[k] for k in plain.__dict__)
    assert encoded(made) == encoded(plain)


@pytest.mark.parametrize("shared", [dict(service_id="ELEVEN-CHARS"), dict(msg_src="中文"),
                                    dict(registered_delivery=256), dict(fee_code=7)])
def test_a_template_whose_shared_fields_do_not_fit_leaves_every_submit_to_encode(shared):
    template = cmpp.SubmitTemplate(cmpp.Submit(**shared))
    made = template.submit(("13800138000",), b"hello")
    plain = cmpp.Submit(**shared, dest_terminal_ids=("13800138000",), msg_content=b"hello")
    assert made == plain and "_encoded_body" not in made.__dict__
    with pytest.raises(ValueError) as error:
        cmpp.encode(made)
    assert str(error.value) == encoded(plain)


@given(sequence_id=u32, msg_id=u64, result=st.one_of(u8, st.integers(-2, 300)))
@settings(max_examples=300)
def test_a_deliver_resp_is_packed_as_the_layout_builds_it(sequence_id, msg_id, result):
    session = Session(Role.CLIENT)
    session.state = State.ESTABLISHED
    deliver = cmpp.Deliver(sequence_id=sequence_id, msg_id=msg_id)
    answer = cmpp.DeliverResp(sequence_id, msg_id, result)
    try:
        expected = by_construct(answer)
    except Exception:  # noqa: BLE001 - a Result that does not fit: the session raises as encode
        with pytest.raises(ValueError) as error:
            session.acknowledge_deliver(deliver, result)
        assert str(error.value) == encoded(answer)
        return
    assert session.acknowledge_deliver(deliver, result)
    assert session.data_to_send() == expected == cmpp.encode(answer)


def by_construct_decode(frame: bytes) -> dict | None:
    """A DELIVER frame's fields (the report's under "report") as the interpreted construct
    layouts parse them; None when they refuse it."""
    try:
        values = wire.DELIVER.parse(frame[12:])
        report = wire.REPORT.parse(values.msg_content) if values.registered_delivery == 1 else None
    except Exception:  # noqa: BLE001 - any refusal
        return None
    names = [f.name for f in dataclasses.fields(cmpp.Deliver) if f.name not in ("sequence_id",
                                                                                 "report")]
    fields = {name: values[name] for name in names}
    fields["report"] = None if report is None else {
        f.name: report[f.name] for f in dataclasses.fields(cmpp.StatusReport)}
    return fields


def decoded_fields(pdu: cmpp.Deliver) -> dict:
    fields = {k: v for k, v in pdu.__dict__.items() if k not in ("sequence_id", "report")}
    fields["report"] = None if pdu.report is None else dict(pdu.report.__dict__)
    return fields


REPORT_FRAME = cmpp.encode(cmpp.Deliver(sequence_id=9, msg_id=77, dest_id="10690001",
                                        service_id="SVC", src_terminal_id="13800138000",
                                        report=cmpp.StatusReport(5, "DELIVRD", "2401011200",
                                                                 "2401011201", "13800138000", 3)))


@given(pdu=pdus_of(cmpp.Deliver))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_report_decodes_as_the_layouts_parse_it(pdu):
    frame = cmpp.encode(pdu)
    decoded = cmpp.decode(frame)
    assert decoded == pdu and decoded.report == pdu.report
    assert decoded_fields(decoded) == by_construct_decode(frame)


@given(changes=st.lists(st.tuples(st.integers(12, len(REPORT_FRAME) - 1), u8), max_size=6))
@settings(max_examples=1500)
def test_any_report_sized_deliver_decodes_as_the_layouts_parse_it_or_fails_with_codec_error(
        changes):
    frame = bytearray(REPORT_FRAME)
    for at, value in changes:
        frame[at] = value
    frame = bytes(frame)
    expected = by_construct_decode(frame)
    try:
        decoded = cmpp.decode(frame)
    except cmpp.CodecError:
        assert expected is None
        return
    assert decoded_fields(decoded) == expected
    assert type(decoded.report) is (type(None) if expected["report"] is None
                                    else cmpp.StatusReport)
