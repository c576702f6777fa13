"""The collector's settings for a long life: fewer young collections, and what the start built
left out of them until a reload gives it back."""

from __future__ import annotations

import gc
import weakref

import pytest

from gateway.ops import settle_heap, tune_collector, unsettle_heap
from gateway.ops.collector import YOUNG


@pytest.fixture
def collector():
    """Whatever a test does to the collector is undone after it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_collects_the_young_generation_less_often_and_keeps_the_older_ratios(collector):
    gc.set_threshold(700, 10, 10)
    tune_collector()
    assert gc.get_threshold() == (YOUNG, 10, 10)


def test_settle_leaves_what_survived_the_start_out_of_later_collections(collector):
    built_at_start = [[] for _ in range(100)]
    settle_heap()
    assert gc.get_freeze_count() >= len(built_at_start)
    unsettle_heap()
    assert gc.get_freeze_count() == 0


def test_settle_frees_the_cycles_left_from_before_it_is_frozen(collector):
    class Node:
        pass

    node = Node()
    node.me = node
    gone = weakref.ref(node)
    gc.disable()                          # no collection but settle's own
    try:
        del node
        assert gone() is not None         # a cycle: its reference count alone never frees it
        settle_heap()
        assert gone() is None
    finally:
        gc.enable()
