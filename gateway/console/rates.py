"""Per-minute figures for the overview, from the daemon's own counters.

At the start of every minute the console samples the counters it shows (``Metrics.totals``):
SUBMIT_RESPs and status reports per channel, messages turned final per channel and status,
and callback attempts by outcome. It keeps the last day of samples (1,441 of them, each a few
numbers per channel), so the figures cost no query and their memory is bounded. They are
this instance's, since it started; the store's figures on the same page (the backlog,
callbacks waiting) are every instance's.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

DAY = 1441                     # samples: a day of minutes, and the one it starts from


@dataclass(frozen=True)
class Sample:
    at: float
    submits: dict[str, float]                   # SUBMIT_RESPs by channel
    receipts: dict[str, float]                  # status reports by channel
    finals: dict[tuple[str, str], float]        # messages turned final by (channel, status)
    callbacks: dict[str, float]                 # callback attempts by outcome


def _sum_by(values: dict[tuple[str, ...], float], *positions: int) -> dict:
    out: dict = {}
    for labels, value in values.items():
        key = labels[positions[0]] if len(positions) == 1 else \
            tuple(labels[p] for p in positions)
        out[key] = out.get(key, 0.0) + value
    return out


def _minus(now: dict, then: dict) -> dict:
    return {key: value - then.get(key, 0.0) for key, value in now.items()
            if value - then.get(key, 0.0)}


class Rates:
    """Samples of the counters; ``run()`` takes one at the start of every minute."""

    def __init__(self, totals: Callable[[], dict], clock: Callable[[], float] = time.time,
                 keep: int = DAY) -> None:
        self.totals, self.clock = totals, clock
        self.samples: deque[Sample] = deque(maxlen=keep)

    def current(self) -> Sample:
        """The counters now, not kept."""
        totals = self.totals()
        return Sample(self.clock(), _sum_by(totals.get("submits", {}), 0),
                      _sum_by(totals.get("receipts", {}), 0),
                      _sum_by(totals.get("messages", {}), 0, 1),
                      _sum_by(totals.get("callbacks", {}), 2))

    def sample(self) -> Sample:
        sample = self.current()
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(60.0 - self.clock() % 60.0)

    def per_minute(self, minutes: int = 60) -> list[tuple[float, float, float, bool]]:
        """(end of the interval, SUBMIT_RESPs, status reports, partial) for each sampled
        interval of the last ``minutes``, all channels together; the last one runs from the
        last sample to now (``partial`` True)."""
        points = [*list(self.samples)[-minutes:], self.current()]
        out = []
        for before, after in zip(points, points[1:]):
            out.append((after.at, sum(_minus(after.submits, before.submits).values()),
                        sum(_minus(after.receipts, before.receipts).values()),
                        after is points[-1]))
        return out[-minutes:]

    def over(self, seconds: float) -> tuple[float, Sample]:
        """(since when, counts) over the last ``seconds``: from the latest sample at least
        that old, or from the first sample when the instance has not run that long."""
        now = self.current()
        start = next((s for s in reversed(self.samples) if s.at <= now.at - seconds),
                     self.samples[0] if self.samples else now)
        return start.at, Sample(now.at, _minus(now.submits, start.submits),
                                _minus(now.receipts, start.receipts),
                                _minus(now.finals, start.finals),
                                _minus(now.callbacks, start.callbacks))
