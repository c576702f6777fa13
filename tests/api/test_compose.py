"""Composing a send: what its recipients share is worked out once (``messages.Composer``),
and each recipient's text is rendered, signed and checked exactly as before: the template's
pieces give what the regular expression gave, a text that surely fits is not cut, and only a
message that may be cut takes a UDH reference."""

from __future__ import annotations

import dataclasses
import json
import hashlib

import cmpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api import messages
from gateway.api.context import Api, dumps
from gateway.api.errors import ApiError
from gateway.api.registry import PLACEHOLDER, Signature, Template
from gateway.api.rules import render, uncut_lengths
from gateway.config import parse_config
from gateway.store import PENDING
from gateway.store.apps import AppDirectory

CONFIG = """
[gateway]
store = "unused.sqlite"
[channels.cmcc]
provider = "default"
host = "127.0.0.1"
port = 7890
account = "900001"
password = "secret"
access_number = "10690001"
connections = 1
center_signature = "【中心】"
[channels.other]
provider = "default"
host = "127.0.0.1"
port = 7891
account = "900002"
password = "secret"
access_number = "10690002"
connections = 1
[apps.shop]
app_key = "shopkey"
master_secret = "shop-secret"
channels = ["cmcc"]
signature = "商城"
[templates.1]
type = "notification"
content = "您的订单{{ order }}已发货"
[templates.2]
type = "notification"
content = "通知"
channel = "other"
"""


class Gateway:
    """What ``Api`` reads of the gateway: a store and the apps."""

    def __init__(self, config) -> None:
        self.store = None
        self.apps = AppDirectory(config.apps, config.channels, self.store)


def composer(template_id: int = 1, **api_changes) -> messages.Composer:
    config = parse_config(CONFIG)
    api = Api(Gateway(config), config)
    for name, value in api_changes.items():
        setattr(api, name, value)
    app = api.apps["shop"]
    return messages.Composer(api, app, api.registry.templates[template_id])


def by_expression(template: Template, params: dict) -> str:
    """How ``render`` replaced placeholders before (a regular expression), for comparison."""
    values = {str(k): str(v) for k, v in params.items()}
    text = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template.content)
    if PLACEHOLDER.search(text):
        raise ApiError(50022, ", ".join(sorted(set(PLACEHOLDER.findall(text)))))
    return text


pieces = st.lists(st.sampled_from(["{{a}}", "{{ b }}", "{", "}", "订单", "x", "{{c}}", " "]),
                  max_size=8).map("".join)
values = st.one_of(st.sampled_from(["{", "}", "{{a}}", "{b", "1", "", "值"]), st.integers(),
                   st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(content=pieces, params=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), values,
                                              min_size=1))
def test_rendering_from_pieces_gives_what_the_expression_gave(content, params):
    template = Template(1, "", "notification", content, "")
    try:
        expected = by_expression(template, params)
    except ApiError as error:
        expected = (error.code, error.detail)
    try:
        got = render(template, params)
    except ApiError as error:
        got = (error.code, error.detail)
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(room=st.integers(0, 40), most=st.integers(1, 10),
       character=st.sampled_from(["a", "中", "😀", "€"]))
def test_a_text_of_the_uncut_lengths_fits_one_part_and_max_parts(room, most, character):
    channel = dataclasses.replace(parse_config(CONFIG).channels["cmcc"], max_parts=most,
                                  center_signature="中" * (room // 2))
    one, uncut = uncut_lengths(channel)
    assert len(cmpp.split_text(character * one, reserve_first=channel.signature_room)) == 1
    assert len(cmpp.split_text(character * uncut, max_parts=most,
                               reserve_first=channel.signature_room)) <= most


def test_only_a_message_that_may_be_cut_takes_a_reference():
    compose = composer()
    short = compose.draft("13800138000", {"order": "A1"})
    assert short.text == "【商城】您的订单A1已发货" and short.reference == 0
    assert len(compose.api.references) == 0
    long = compose.draft("13800138000", {"order": "很长" * 40})
    start = hashlib.blake2b(b"13800138000", digest_size=1).digest()[0]
    assert long.reference == start and len(compose.api.references) == 1


def test_each_recipient_gets_an_error_of_its_own_for_what_the_send_shares():
    other_channel = composer(template_id=2)
    first, second = (other_channel.draft(m, None) for m in ("13800138000", "13900139000"))
    assert first.error.code == second.error.code == 50013 and first.error is not second.error
    compose = composer()
    compose.api.registry.set_signature(Signature(1, "shop", "商城", PENDING))
    unsigned = messages.Composer(compose.api, compose.app, compose.template)
    errors = []
    for params in ({"order": "1"}, {"order": "2"}, {"order": True}):
        try:
            unsigned.draft("13800138000", params)
        except ApiError as error:
            errors.append(error)
    assert [e.code for e in errors] == [50020, 50020, 50007]   # its parameters' error first
    assert errors[0] is not errors[1]


def test_a_text_too_long_for_the_channel_is_refused_for_every_recipient_it_is_for():
    compose = composer()
    drafts = [compose.draft(m, {"order": "长" * 2000}) for m in ("13800138000", "13900139000")]
    assert all(isinstance(d, messages.Late) for d in drafts)
    assert [d.error.code for d in drafts] == [50007, 50007]
    assert drafts[0].error is not drafts[1].error


@settings(max_examples=200, deadline=None)
@given(prefix=pieces, content=pieces,
       params=st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b", "c"]), values)))
def test_a_prefix_is_put_in_front_and_never_looked_into_for_placeholders(prefix, content, params):
    """The signature goes in with the rendering; a "{{a}}" in it is no placeholder left."""
    template = Template(1, "", "notification", content, "")
    try:
        expected = prefix + render(template, params)
    except ApiError as error:
        expected = (error.code, error.detail)
    try:
        got = render(template, params, prefix)
    except ApiError as error:
        got = (error.code, error.detail)
    assert got == expected


@pytest.mark.parametrize("params", [[], "", 0, False, ["x"], "x", 1.5, True])
def test_parameters_that_are_not_an_object_are_50007_even_empty_ones(params):
    for content in ("您的订单{{order}}已发货", "通知"):
        with pytest.raises(ApiError) as refused:
            render(Template(1, "", "notification", content, ""), params)
        assert refused.value.code == 50007


def test_no_parameters_are_50023_only_for_a_template_with_placeholders():
    for params in (None, {}):
        with pytest.raises(ApiError) as refused:
            render(Template(1, "", "notification", "您的订单{{order}}已发货", ""), params)
        assert refused.value.code == 50023
        assert render(Template(1, "", "notification", "通知", ""), params, "【商城】") == \
            "【商城】通知"


@pytest.mark.parametrize("value", [True, None, ["1"], {"x": "1"}])
def test_a_parameter_neither_a_string_nor_a_number_is_50007_even_unused(value):
    template = Template(1, "", "notification", "您的订单{{order}}已发货", "")
    for params in ({"order": value}, {"order": "1", "other": value}, {"other": value}):
        with pytest.raises(ApiError) as refused:
            render(template, params)
        assert refused.value.code == 50007


def test_numbers_are_rendered_as_text():
    assert render(Template(1, "", "notification", "{{a}}/{{b}}/{{c}}", ""),
                  {"a": 12, "b": 1.5, "c": "x"}) == "12/1.5/x"


def by_dicts(recipients: list, errors: list, ids, refused_ids) -> str:
    """How a batch's answer was written before (a dict per recipient, then ``dumps``)."""
    sent, refused, out = iter(ids), iter(refused_ids), []
    for entry, error in zip(recipients, errors):
        name, value = messages._named(entry)
        if error is None:
            out.append({"msg_id": str(next(sent)), name: value})
            continue
        item = error.entry()
        item["msg_id"] = str(next(refused))
        item[name] = value
        if isinstance(entry, dict) and "temp_para" in entry:
            item["temp_para"] = entry["temp_para"]
        out.append(item)
    return dumps({"success_count": len(ids), "failure_count": len(refused_ids),
                  "recipients": out})


named = st.one_of(st.text(), st.integers(), st.none(), st.booleans(), st.floats(),
                  st.lists(st.text(), max_size=2))
entries = st.one_of(
    st.fixed_dictionaries({"mobile": named}, optional={"temp_para": st.dictionaries(
        st.text(), st.text(), max_size=2)}),
    st.fixed_dictionaries({"userid": named}, optional={"mobile": st.sampled_from(["", None])}),
    named)
outcomes = st.one_of(st.none(), st.builds(ApiError, st.sampled_from([50006, 50007, 50034]),
                                          st.one_of(st.none(), st.text())))


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(st.tuples(entries, outcomes), max_size=12))
def test_a_batch_answer_written_as_text_is_what_dumps_wrote(batch):
    recipients = [entry for entry, _ in batch]
    errors = [error for _, error in batch]
    ids = range(10**11, 10**11 + errors.count(None))
    refused_ids = tuple(range(7, 7 + len(errors) - errors.count(None)))
    expected = by_dicts(recipients, errors, ids, refused_ids)
    assert messages._batch_answer(recipients, errors, ids, refused_ids) == expected
    assert json.loads(expected)["success_count"] == len(ids)
