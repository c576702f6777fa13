"""A latency histogram of fixed-size buckets, for a load that records millions of values.

Values are whole microseconds. Below 128 µs every value has a bucket of its own; above, each
power of two is cut into 64 buckets, so a bucket is at most 1/64 (1.6%) of its values wide
(the layout of HdrHistogram with two significant digits). Recording is a few integer
operations and one dict increment, whatever the count; memory is one entry per bucket in use
(at most a few thousand). Histograms of several processes merge by adding their counts, and
percentiles of the merged one are those of all the values together.

A percentile is nearest rank below, as ``report.percentile`` on a sorted list (the value at
index floor(n * q / 100)), reported as the highest value of its bucket and never above the
largest value recorded: at most 1.6% above the exact figure, never below it.
"""

from __future__ import annotations

from collections.abc import Iterable

SUB_BITS = 6                        # 64 buckets per power of two
EXACT = 2 << SUB_BITS               # below 128 µs, one bucket per microsecond
LARGEST = (1 << 40) - 1             # about 12.7 days; larger values count as this


def bucket_of(micros: int) -> int:
    """The bucket index of a value in whole microseconds (negative counts as 0)."""
    if micros < EXACT:
        return micros if micros > 0 else 0
    if micros > LARGEST:
        micros = LARGEST
    shift = micros.bit_length() - SUB_BITS - 1
    return (shift << SUB_BITS) + (micros >> shift)


# The bucket of every value below TABLE_SIZE µs, looked up rather than worked out (most
# latencies are below 16 ms, and a lookup is a third of the work of ``bucket_of``).
TABLE_SIZE = 1 << 14
_BUCKETS = [bucket_of(micros) for micros in range(TABLE_SIZE)]


def bucket_range(index: int) -> tuple[int, int]:
    """The lowest and highest value (µs) of a bucket."""
    if index < EXACT:
        return index, index
    shift = (index >> SUB_BITS) - 1
    low = ((index & ((1 << SUB_BITS) - 1)) + (1 << SUB_BITS)) << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of values (µs) by bucket, and the largest value."""

    __slots__ = ("counts", "largest")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.largest = 0

    def record(self, seconds: float) -> None:
        """Count one value given in seconds (truncated to whole microseconds)."""
        micros = int(seconds * 1_000_000)
        index = _BUCKETS[micros] if 0 <= micros < TABLE_SIZE else bucket_of(micros)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if micros > self.largest:
            self.largest = min(micros, LARGEST)

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return sum(self.counts.values())

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other``'s counts to this one; returns self."""
        counts = self.counts
        for index, n in other.counts.items():
            counts[index] = counts.get(index, 0) + n
        self.largest = max(self.largest, other.largest)
        return self

    def percentile(self, q: float) -> int:
        """The ``q``-th percentile (0-100) in µs, as the module says; 0 when empty."""
        count = self.count
        if not count:
            return 0
        rank = min(count - 1, int(count * q / 100))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen > rank:
                return min(bucket_range(index)[1], self.largest)
        return self.largest            # not reached: the counts add up to count

    def to_json(self) -> dict:
        """A JSON-able form (``from_json`` reads it back)."""
        return {"counts": [[i, n] for i, n in sorted(self.counts.items())],
                "largest": self.largest}

    @classmethod
    def from_json(cls, data: dict) -> Histogram:
        histogram = cls()
        histogram.counts = {int(i): int(n) for i, n in data["counts"]}
        histogram.largest = int(data["largest"])
        return histogram

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        """One histogram of all the values of ``histograms``."""
        out = cls()
        for histogram in histograms:
            out.merge(histogram)
        return out
