"""How long the store's transactions take: the histogram behind ``cmpp_store_commit_seconds``,
kept the same way by both stores.

Written by the store's one writer only and read whole by metrics scrapes, without a lock: a
scrape that races a commit sees that commit's sample or not, never half of it in a way that
matters (each count only grows).
"""

from __future__ import annotations

from bisect import bisect_left

COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class CommitTimes:
    """Transactions by duration: a count per bucket of COMMIT_BUCKETS (and one for +Inf), and
    the seconds they took together."""

    def __init__(self) -> None:
        self.counts = [0] * (len(COMMIT_BUCKETS) + 1)
        self.seconds = 0.0

    def add(self, elapsed: float) -> None:
        self.counts[bisect_left(COMMIT_BUCKETS, elapsed)] += 1
        self.seconds += elapsed

    def snapshot(self) -> tuple[tuple[float, ...], list[int], float]:
        """(bucket bounds, count per bucket and +Inf, seconds)."""
        return COMMIT_BUCKETS, list(self.counts), self.seconds
