"""The codec's fast paths against the construct definitions: a SUBMIT from a template, and
a DELIVER_RESP packed at once, are the very PDUs and bytes the wire layouts give."""

from __future__ import annotations

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
