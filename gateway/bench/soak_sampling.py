"""What ``gateway.bench.soak`` samples from the gateway under test once a period (``Sampler``):
its RSS and store size, the commits' mean and 99th-percentile time, the end-to-end and accepted
rates, the backlog, the held reports and what retention pruned, read from its /metrics; and
the table line each sample prints as (``HEADER``, ``line``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from .soak import GatewayProcess, Load, Receiver


def total(metrics: dict, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (sample, items), value in metrics.items()
               if sample == name and wanted <= set(items))


def p99_ms(before: dict, after: dict) -> float:
    """The upper bound of the commit-time bucket that holds the interval's 99th percentile."""
    name = "cmpp_store_commit_seconds_bucket"
    bounds = sorted({float(dict(items)["le"]) for sample, items in after if sample == name})
    counts = [total(after, name, le=_le(b)) - total(before, name, le=_le(b)) for b in bounds]
    if not counts or counts[-1] <= 0:
        return 0.0
    return next(b for b, c in zip(bounds, counts) if c >= 0.99 * counts[-1]) * 1000


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else str(bound)


@dataclass
class Sampler:
    gateway: GatewayProcess
    receiver: Receiver
    load: Load
    started: float
    _last: dict = field(default_factory=dict)
    _at: float = 0.0
    _status: int = 0
    _accepted: int = 0

    async def sample(self, http: aiohttp.ClientSession) -> dict:
        now, metrics = time.monotonic(), await self.gateway.metrics(http)
        last, seconds = self._last or metrics, (now - self._at) if self._last else 0.0
        commits = total(metrics, "cmpp_store_commit_seconds_count") - \
            total(last, "cmpp_store_commit_seconds_count")
        commit_time = total(metrics, "cmpp_store_commit_seconds_sum") - \
            total(last, "cmpp_store_commit_seconds_sum")
        row = {
            "minute": (now - self.started) / 60, "rss": self.gateway.rss_mib(),
            "store": self.gateway.store_mib(),
            "commit_ms": commit_time / commits * 1000 if commits else 0.0,
            "commit_p99_ms": p99_ms(last, metrics),
            "e2e": (self.receiver.status - self._status) / seconds if seconds else 0.0,
            "accepted": (self.load.outcomes["accepted"] - self._accepted) / seconds
            if seconds else 0.0,
            "backlog": total(metrics, "cmpp_store_messages", status="accepted") +
            total(metrics, "cmpp_store_messages", status="submitted"),
            "held": total(metrics, "cmpp_unmatched_receipts"),
            "pruned": total(metrics, "cmpp_store_pruned_rows_total") -
            total(last, "cmpp_store_pruned_rows_total"),
            "expired": total(metrics, "cmpp_unmatched_receipts_expired_total") -
            total(last, "cmpp_unmatched_receipts_expired_total"),
        }
        self._last, self._at = metrics, now
        self._status, self._accepted = self.receiver.status, self.load.outcomes["accepted"]
        return row


HEADER = (f"{'min':>6} {'RSS MiB':>8} {'store MiB':>9} {'commit ms':>9} {'p99 ms':>7} "
          f"{'e2e/s':>7} {'accept/s':>8} {'backlog':>8} {'held':>7} {'pruned':>8} {'expired':>7}")


def line(row: dict) -> str:
    return (f"{row['minute']:>6.1f} {row['rss']:>8.1f} {row['store']:>9.1f} "
            f"{row['commit_ms']:>9.2f} {row['commit_p99_ms']:>7.1f} {row['e2e']:>7.1f} "
            f"{row['accepted']:>8.1f} {row['backlog']:>8.0f} {row['held']:>7.0f} "
            f"{row['pruned']:>8.0f} {row['expired']:>7.0f}")
