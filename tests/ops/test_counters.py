"""Lock-free metric families: the numbers Prometheus reads back are the ones recorded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gateway.ops.counters import CounterFamily, FamiliesCollector, GaugeFamily, HistogramFamily


def registry_with(*families):
    registry = CollectorRegistry()
    registry.register(FamiliesCollector(list(families)))
    return registry


def test_counters_are_exposed_with_total_and_their_labels():
    family = CounterFamily("cmpp_things", "Things", ["channel"])
    family.labels("a").inc()
    family.labels("a").inc(2)
    family.labels("b").inc()
    text = generate_latest(registry_with(family)).decode()
    assert 'cmpp_things_total{channel="a"} 3.0' in text
    assert 'cmpp_things_total{channel="b"} 1.0' in text


def test_gauges_are_exposed_with_the_last_value_set():
    family = GaugeFamily("cmpp_flag", "Flag", ["app"])
    family.labels("a").set(1)
    family.labels("a").set(0)
    family.labels("b").set(1)
    text = generate_latest(registry_with(family)).decode()
    assert "# TYPE cmpp_flag gauge" in text
    assert 'cmpp_flag{app="a"} 0.0' in text and 'cmpp_flag{app="b"} 1.0' in text


def test_histograms_count_cumulatively_into_their_buckets():
    family = HistogramFamily("cmpp_wait_seconds", "Wait", ["channel"], buckets=(0.1, 1.0))
    child = family.labels("a")
    for value in (0.05, 0.1, 0.5, 2.0):
        child.observe(value)
    text = generate_latest(registry_with(family)).decode()
    assert 'cmpp_wait_seconds_bucket{channel="a",le="0.1"} 2.0' in text
    assert 'cmpp_wait_seconds_bucket{channel="a",le="1.0"} 3.0' in text
    assert 'cmpp_wait_seconds_bucket{channel="a",le="+Inf"} 4.0' in text
    assert 'cmpp_wait_seconds_count{channel="a"} 4.0' in text
    assert 'cmpp_wait_seconds_sum{channel="a"} 2.65' in text


def test_the_wrong_number_of_labels_is_refused():
    family = CounterFamily("cmpp_things", "Things", ["channel", "status"])
    try:
        family.labels("a")
    except ValueError as error:
        assert "takes labels" in str(error)
    else:
        raise AssertionError("no error")
