"""Counters and histograms without locks, exposed through a prometheus-client collector.

prometheus-client takes a lock on every increment so that any thread may record; the gateway
records only from its event loop (and serves /metrics from it too), so these families keep
plain numbers and hand them to prometheus-client when it collects. Same interface for the
callers: ``family.labels(...)`` returns a child with ``inc()``, ``set()`` or ``observe()``.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)      # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.counts[bisect_left(self.bounds, value)] += 1


class _Family:
    def __init__(self, name: str, documentation: str, labelnames: list[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.children: dict[tuple[str, ...], object] = {}

    def labels(self, *values: str):
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self._child()
        return child


class CounterFamily(_Family):
    """A counter; Prometheus sees ``<name>_total``."""

    def _child(self) -> CounterChild:
        return CounterChild()

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            family.add_metric(list(values), child.value)
        return family


class GaugeFamily(_Family):
    """A gauge set by the event loop (state computed at scrape time uses a collector)."""

    def _child(self) -> GaugeChild:
        return GaugeChild()

    def collect(self):
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            family.add_metric(list(values), child.value)
        return family


class HistogramFamily(_Family):
    def __init__(self, name: str, documentation: str, labelnames: list[str],
                 buckets: tuple[float, ...]) -> None:
        super().__init__(name, documentation, labelnames)
        self.buckets = tuple(sorted(buckets))

    def _child(self) -> HistogramChild:
        return HistogramChild(self.buckets)

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in self.children.items():
            total, cumulative = 0, []
            for bound, count in zip((*map(str, self.buckets), "+Inf"), child.counts):
                total += count
                cumulative.append((bound, total))
            family.add_metric(list(values), cumulative, child.sum)
        return family


class FamiliesCollector(Collector):
    """Hands every family to prometheus-client when it collects."""

    def __init__(self, families: list[_Family]) -> None:
        self.families = families

    def collect(self):
        for family in self.families:
            yield family.collect()

    def describe(self):
        return []
