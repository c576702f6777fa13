"""The repeat rule's compact memory behaves as a plain dict of key -> latest time would,
with an exact window, and holds a million keys in a third of what that dict takes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.rules import RecentKeys

WINDOW = 4.0
_MOST = (1 << 64) - 1


class Reference:
    """The semantics, plainly: each key's latest time, seen while inside the window."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def seen(self, key: int, now: float) -> bool:
        return key in self.times and self.times[key] > now - WINDOW

    def live(self, now: float) -> int:
        return sum(at > now - WINDOW for at in self.times.values())

    def add(self, key: int, now: float) -> None:
        self.times[key] = now

    def discard(self, key: int, at: float) -> None:
        if self.times.get(key) == at:
            del self.times[key]


def digests(count: int, seed: int = 15) -> list[int]:
    """Keys as the rule makes them: 64-bit digests, evenly spread (the table's slot for a
    key is its top bits)."""
    draw = random.Random(seed).getrandbits
    return [draw(64) for _ in range(count)]


def lagging(step: int, mix: int = RecentKeys.MIX) -> type[RecentKeys]:
    """RecentKeys dropping ``step`` old adds a call, so that the drops lag behind the window;
    ``mix`` 1: a key's slot is its own top bits, so that small keys crowd into one run."""
    return type("LaggingRecentKeys", (RecentKeys,), {"STEP": step, "MIX": mix})


keys = st.one_of(st.integers(0, 12), st.integers(0, _MOST))
steps = st.lists(st.tuples(st.sampled_from(["add", "add", "seen", "discard", "full"]), keys,
                           st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.5, 0.7, 2.0, 4.0, 9.0]),
                           st.integers(0, 50)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 20), st.sampled_from([1, 2, 1024]),
       st.sampled_from([1, RecentKeys.MIX]))
def test_recent_keys_answer_as_a_dict_of_latest_times_would(ops, limit, step, mix):
    """A small limit makes a small table and ring, which keys 0-12 crowd into runs that
    deletions must keep whole, and which grow past the limit (copied twice as large);
    ``full`` is exact even while the drops lag, and the keys held are never fewer than those
    inside the window (with no lag: exactly those as of the last add, or full at the limit)."""
    recent, model = lagging(step, mix)(WINDOW, limit=limit), Reference()
    now, added, last = 0.0, [], 0.0
    for op, key, gap, pick in ops:
        now += gap
        if op == "add":
            recent.add(key, now)
            model.add(key, now)
            added.append((key, now))
            last = now
        elif op == "discard" and added:
            key, at = added[pick % len(added)]        # an earlier add, maybe superseded
            recent.discard(key, at)
            model.discard(key, at)
        elif op == "full":
            last = now if len(recent) >= limit else last
            assert recent.full(now) == (model.live(now) >= limit)
        for probe in {key, *(k for k, _ in added[-5:])}:
            assert recent.seen(probe, now) == model.seen(probe, now)
        assert len(recent) >= model.live(now)
        if step == 1024:                               # never that many to drop at once
            assert len(recent) == model.live(last)


def test_the_keys_that_left_the_window_go_a_few_a_call_yet_full_stays_exact():
    """A burst of 20,000 keys, one more later, then most of a quiet window: the next add
    drops only ``STEP`` of the burst (no call does work in proportion to the keys held),
    ``full`` drops what it needs to answer exactly, and the next adds drop the rest."""
    recent, step, burst = RecentKeys(30.0, limit=10_000), RecentKeys.STEP, digests(20_000)
    for key in burst:
        recent.add(key, 0.0)
    recent.add(1, 20.0)
    recent.add(2, 31.0)
    assert len(recent) == 20_002 - step and not recent.seen(burst[-1], 31.0)
    assert not recent.full(31.0) and len(recent) == 9_999
    for key in digests(10, seed=16):
        recent.add(key, 32.0)
    assert len(recent) == 12 and recent.seen(1, 32.0)


def test_the_keys_go_at_once_when_the_newest_left_the_window():
    recent, burst = RecentKeys(30.0, limit=10_000), digests(20_000)
    for key in burst:
        recent.add(key, 0.0)
    recent.add(burst[1], 30.0)
    assert len(recent) == 1 and recent.seen(burst[1], 30.0) and not recent.seen(burst[2], 30.0)


def test_a_discard_forgets_only_the_add_it_names():
    recent = RecentKeys(30.0)
    recent.add(7, 1.0)
    recent.add(7, 2.0)
    recent.discard(7, 1.0)                  # superseded: the later add stays
    assert recent.seen(7, 3.0) and len(recent) == 1
    recent.discard(7, 2.0)
    assert not recent.seen(7, 3.0) and len(recent) == 0
    recent.add(7, 40.0)                     # the dropped adds of 7 do not take this one
    assert recent.seen(7, 41.0) and len(recent) == 1


def test_a_key_outside_64_bits_is_remembered_as_itself():
    recent = RecentKeys(30.0)
    recent.add((1 << 64) + 5, 0.0)
    recent.add(-1, 0.0)
    assert recent.seen((1 << 64) + 5, 1.0) and recent.seen(-1, 1.0) and len(recent) == 2
    assert not recent.seen(5, 1.0) and not recent.seen(_MOST, 1.0)


def resident(field: str) -> int:
    """VmRSS or VmHWM of this process, in bytes."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def test_a_million_keys_take_less_than_48_mib_and_never_more_for_a_moment():
    """A 16-byte table slot for each of 2 x limit and a 12-byte ring entry for each of limit:
    44 MiB, in memory maps (counted by RSS, not tracemalloc), where the plain dict this
    replaces took 124 MiB. Nothing is copied as keys come, so the peak is what is held."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")                                   # VmHWM starts again from VmRSS
    before = resident("VmRSS:")
    recent, draw = RecentKeys(30.0, limit=1_000_000), random.Random(15).getrandbits
    for i in range(1_000_000):
        recent.add(draw(64), i * 29.9e-6)                 # all inside one window
    held, peak = resident("VmRSS:") - before, resident("VmHWM:") - before
    assert len(recent) == 1_000_000 and recent.full(29.9)
    assert held < 48 * 2**20 and peak < 49 * 2**20, (held / 2**20, peak / 2**20)


def longest_run(recent: RecentKeys) -> int:
    """The most slots in a row that hold a key (the longest walk of a lookup)."""
    longest = run = 0
    for added in recent._table[1::2]:
        run = run + 1 if added else 0
        longest = max(longest, run)
    return longest


@pytest.mark.parametrize("mix, spread", [(None, True), (1, False)])
def test_keys_ground_to_share_their_top_bits_are_spread_over_the_table(mix, spread):
    """2,000 keys with the same top 24 bits (what an app grinding out numbers and texts
    could send) land in one run of slots when a key's slot is its own top bits (mix 1); the
    process's MIX spreads them as any keys."""
    kind = RecentKeys if mix is None else lagging(RecentKeys.STEP, mix)
    recent = kind(30.0, limit=100_000)
    for key in digests(2_000):
        recent.add(0xABCDEF << 40 | key >> 24, 0.0)
    assert (longest_run(recent) < 20) == spread
