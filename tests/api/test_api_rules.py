"""The API's sending rules keep memory only for what is inside their windows."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api import rules
from gateway.api.errors import ApiError
from gateway.api.registry import Template
from gateway.api.rules import RecentKeys, References, SendRules, WindowCounter
from gateway.config import ApiSettings


def test_a_window_counter_counts_within_the_window_and_forgets_keys_that_left_it():
    counter = WindowCounter(60)
    counter.add("13800138000", 0.0)
    counter.add("13800138000", 30.0)
    assert counter.count("13800138000", 59.0) == 2
    assert counter.count("13800138000", 61.0) == 1
    for i in range(1000):
        counter.add(f"1390000{i:04d}", 100.0 + i * 0.01)
    assert len(counter) == 1000                  # the first key's last event left the window
    counter.add("x", 500.0)
    assert len(counter) == 1


def test_a_window_counter_holds_at_most_its_key_limit():
    counter = WindowCounter(3600, keys=100)
    for i in range(1000):
        counter.add(str(i), float(i))
    assert len(counter) == 100 and counter.count("999", 999.0) == 1 and counter.count("0", 999.0) == 0


def test_recent_keys_see_a_key_only_within_the_window():
    recent = RecentKeys(30)
    recent.add("a", 0.0)
    assert recent.seen("a", 29.9) and not recent.seen("a", 30.0) and not recent.seen("b", 1.0)
    for i in range(10_000):
        recent.add(f"k{i}", 100.0 + i * 0.001)
    assert len(recent) == 10_000
    recent.add("late", 200.0)
    assert len(recent) == 1


def test_rules_that_are_off_remember_nothing_per_send():
    settings = ApiSettings(messages_per_app_per_second=0, repeat_window=0,
                           codes_per_number_per_minute=0, codes_per_number_per_hour=0)
    clock = iter(range(100_000)).__next__
    rules = SendRules(settings, clock=lambda: float(clock()))
    for i in range(5000):
        rules.record("shop", [(f"138{i:08d}", f"text {i}")])
    assert (len(rules.app_second), len(rules.repeats), rules.code_limits) == (0, 0, ())


def test_a_send_counted_and_then_forgotten_leaves_no_trace():
    settings = ApiSettings(messages_per_app_per_second=2, repeat_window=30)
    rules = SendRules(settings, clock=lambda: 100.0)
    kept = rules.record("shop", [("13800138000", "a")])
    dropped = rules.record("shop", [("13900139000", "b"), ("13700137000", "c")])
    rules.forget(dropped)
    assert rules.repeats.seen(rules._repeat_key("13800138000", "a"), 100.0)
    assert not rules.repeats.seen(rules._repeat_key("13900139000", "b"), 100.0)
    assert rules.app_second.count("shop", 100.0) == 1
    rules.forget(kept)
    assert (len(rules.repeats), len(rules.app_second)) == (0, 0)


def test_recent_keys_hold_at_most_their_limit_and_forget_no_key_early():
    recent = RecentKeys(1000, limit=1000)
    for i in range(1000):
        recent.add(i, float(i))
    assert recent.full(999.0) and len(recent) == 1000 and recent.seen(0, 999.0)
    assert not recent.full(1499.5) and len(recent) == 500         # the first half left
    recent.add("again", 2000.0)
    recent.add("again", 2001.0)
    assert len(recent) == 1 and recent.seen("again", 3000.5) and not recent.seen("again", 3001.0)


def test_a_full_repeat_memory_refuses_new_sends_and_never_lets_a_repeat_through():
    """At the ceiling the rule refuses what it cannot remember (50009, counted) instead of
    forgetting the oldest send: the first number still cannot be sent the same text again."""
    settings = ApiSettings(repeat_window=30, repeat_keys=1000)
    now = [0.0]
    rules = SendRules(settings, clock=lambda: now[0])
    notice = Template(id=1, app="", type="notification", content="hello", signature="")
    for i in range(1000):
        rules.check_recipient(notice, f"138{i:08d}", "hello")
        rules.record("shop", [(f"138{i:08d}", "hello")])
    with pytest.raises(ApiError) as refused:
        rules.check_recipient(notice, "13900000000", "hello")
    assert refused.value.code == 50009 and rules.repeats.refused == 1
    with pytest.raises(ApiError) as repeat:
        rules.check_recipient(notice, "13800000000", "hello")
    assert repeat.value.code == 50034
    assert len(rules.repeats) == 1000
    now[0] = 30.0                                    # the window has passed: room again
    rules.check_recipient(notice, "13900000000", "hello")


def test_references_roll_per_recipient_from_a_start_of_their_own():
    references = References()
    start = hashlib.blake2b(b"13800138000", digest_size=1).digest()[0]
    taken = [references.next("13800138000") for _ in range(257)]
    assert taken == [(start + i) & 0xFF for i in range(257)]     # wraps after 256
    other = hashlib.blake2b(b"13900139000", digest_size=1).digest()[0]
    assert references.next("13900139000") == other
    assert references.next("13800138000") == (start + 257) & 0xFF


def test_references_remember_at_most_their_limit_and_forget_the_least_recently_sent():
    references = References(keys=3)
    for mobile in ("13800000001", "13800000002", "13800000003", "13800000001"):
        references.next(mobile)
    references.next("13800000004")              # full: ...0002 was sent to longest ago
    assert len(references) == 3
    assert references.next("13800000001") == \
        (hashlib.blake2b(b"13800000001", digest_size=1).digest()[0] + 2) & 0xFF
    assert references.next("13800000002") == hashlib.blake2b(b"13800000002",
                                                             digest_size=1).digest()[0]
    for i in range(10_000):
        references.next(f"139{i:08d}")
    assert len(references) == 3


def test_sending_again_to_known_recipients_rebuilds_no_table():
    """The soak's RSS steps: a recipient popped and inserted again on every send left a dead
    slot each time, and the table was rebuilt whole, a new copy allocated, every few thousand
    sends here (every 125,000 with 50,000 recipients); moved in place, sending to known
    recipients allocates nothing that stays."""
    mobiles = [f"138{i:08d}" for i in range(2000)]
    references = References()
    for mobile in mobiles:
        references.next(mobile)
    tracing, frames = tracemalloc.is_tracing(), tracemalloc.get_traceback_limit()
    tracemalloc.stop()                          # trace what the sends below allocate only
    tracemalloc.start()
    try:
        for _ in range(20):                     # 40,000 sends: before, 12 rebuilds
            for mobile in mobiles:
                references.next(mobile)
        kept = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, rules.__file__)])
    finally:
        tracemalloc.stop()
        if tracing:
            tracemalloc.start(frames)
    assert len(references) == 2000
    assert sum(trace.size for trace in kept.traces) == 0    # before: the last copy, 233 KB


def normalized_before(pattern: str, mobile):
    """How ``MobileRule.normalize`` took a number before its fast path for strings."""
    import re
    if mobile is None or mobile == "":
        raise ApiError(50004)
    if isinstance(mobile, int) and not isinstance(mobile, bool):
        mobile = str(mobile)
    if not isinstance(mobile, str):
        raise ApiError(50006)
    mobile = mobile.strip(" ")
    if not re.compile(pattern, re.ASCII).fullmatch(mobile):
        raise ApiError(50006)
    digits = mobile.lstrip("+")
    if not (digits.isascii() and digits.isdigit()):
        raise ApiError(50006)
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


class Text(str):
    """A string of another type: taken as a string, as before."""


numbers_given = st.one_of(
    st.lists(st.sampled_from(["1", "3", "8", "6", "0", "+", " ", "８", "a", "-"]),
             max_size=16).map("".join),
    st.sampled_from(["", " ", "13800138000", "+8613800138000", " 8613800138000 ",
                     "+13800138000", "1380013800０"]).map(Text),
    st.from_regex(r"\A ?(\+?86)?1[3-9][0-9]{9} ?\Z"), st.integers(0, 10**14), st.booleans(), st.none(), st.floats(), st.just([]),
    st.just(["13800138000"]))


@settings(max_examples=400, deadline=None)
@given(mobile=numbers_given, pattern=st.sampled_from(
    [ApiSettings().mobile_pattern, r"\+?(86)?1\d{10}", r"[+\d ]+", r".*"]))
def test_numbers_are_normalised_and_refused_as_before(mobile, pattern):
    def outcome(normalize):
        try:
            return normalize(mobile)
        except ApiError as error:
            return error.code
    assert outcome(rules.MobileRule(pattern).normalize) == \
        outcome(lambda m: normalized_before(pattern, m))
