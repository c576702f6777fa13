"""A body nested deeper than MAX_DEPTH levels is refused (50007), and one that is not is
taken, however its containers are spread: the depth check stops early only when the
containers it has not looked into cannot make the body too deep."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.context import MAX_DEPTH, _check_depth
from gateway.api.errors import ApiError


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def nested(levels: int, width: int):
    """``levels`` levels, with ``width`` flat containers beside the deepest chain."""
    value: object = [{"temp_para": {"order": "1"}} for _ in range(width)]
    for _ in range(levels - 1):
        value = [value]
    return value


def refused(value) -> bool:
    text = json.dumps(value)
    try:
        _check_depth(value, text.count("[") + text.count("{"))
    except ApiError as error:
        assert error.code == 50007
        return True
    return False


@settings(max_examples=200, deadline=None)
@given(levels=st.integers(1, MAX_DEPTH + 3), width=st.integers(0, 40))
def test_the_depth_check_refuses_exactly_what_is_too_deep(levels, width):
    value = nested(levels, width)
    assert refused(value) == (depth(value) > MAX_DEPTH)


@pytest.mark.parametrize("extra", [0, 1])
def test_a_batch_of_a_thousand_at_the_limit_and_past_it(extra):
    value = {"temp_id": 1, "recipients": [{"mobile": "13800138000", "temp_para": {"a": "b"}}
                                          for _ in range(1000)]}
    deepest = value["recipients"][999]["temp_para"]
    for _ in range(MAX_DEPTH - 4 + extra):                 # 4 levels are the batch's own
        deepest["a"] = deepest = {}
    assert depth(value) == MAX_DEPTH + extra
    assert refused(value) == bool(extra)
