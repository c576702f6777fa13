"""The store's housekeeping: what keeps it from growing without end.

Every ``interval`` seconds the sweeper ends ``unknown`` the messages that had no final report
within ``report_timeout``, then runs four passes, each a series of small store operations
(``batch`` rows each, a short pause between them) so that the hot path's operations go on in
between: status reports that matched no message are dropped after
``unmatched_report_timeout`` (and counted), finished messages and MO go after ``retention``
with everything that hangs off them, and idempotency keys (stored API answers, messages'
keys) after ``idempotency_window``. A pass gets at most a quarter of the interval per sweep;
one that is not done by then goes on from where it stopped at the next sweep, so a large
backlog (retention turned on for an old store) is worked off over several sweeps without
holding up the report timeout. A store error is logged, and the next sweep tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from gateway.config import ApiSettings, GatewaySettings
from gateway.ops import Metrics
from gateway.store import Store

log = logging.getLogger("cmpp_gateway.sweeper")


class Sweeper:
    def __init__(self, store: Store, settings: GatewaySettings, api: ApiSettings,
                 metrics: Metrics, clock: Callable[[], float] = time.time,
                 interval: float = 60.0, batch: int = 256, pause: float = 0.01) -> None:
        self.store, self.settings, self.api, self.metrics = store, settings, api, metrics
        self.clock, self.interval, self.batch, self.pause = clock, interval, batch, pause
        self._after: dict[str, int] = {}            # where an unfinished pass goes on
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception as error:  # noqa: BLE001 - the next sweep tries again
                log.error("store housekeeping failed (%s: %s); trying again in %g s",
                          type(error).__name__, error, self.interval)

    async def sweep(self) -> dict[str, Counter]:
        """One round of housekeeping; returns the rows each pass removed, by table."""
        s, now = self.settings, self.clock()
        expired = await self.store.expire_reports(now, s.report_timeout)
        if expired:
            log.warning("%d message(s) had no status report within %g s: unknown",
                        len(expired), s.report_timeout)
        done = {
            "unmatched": await self._pass(self.store.expire_unmatched_receipts,
                                          now - s.unmatched_report_timeout),
            "messages": await self._pass(self.store.prune_messages, now - s.retention),
            "mo": await self._pass(self.store.prune_mo, now - s.retention),
            "idempotency": await self._pass(self.store.forget_idempotency_keys,
                                            now - self.api.idempotency_window),
        }
        self.metrics.unmatched_expired(done["unmatched"]["receipts"])
        for name in ("messages", "mo", "idempotency"):
            self.metrics.pruned(done[name])
        if done["unmatched"]["receipts"]:
            log.info("%d status report(s) matched no message within %g s: dropped",
                     done["unmatched"]["receipts"], s.unmatched_report_timeout)
        return done

    async def _pass(self, step, before: float) -> Counter:
        """Batches of ``step`` until the pass is done or its share of the interval is used."""
        name, loop = step.__name__, asyncio.get_running_loop()
        deadline = loop.time() + self.interval / 4
        total, after = Counter(), self._after.pop(name, 0)
        while True:
            pruned = await step(before, after, self.batch)
            total.update(pruned.rows)
            if pruned.after is None:
                return total
            after = pruned.after
            if loop.time() >= deadline:
                self._after[name] = after
                return total
            await asyncio.sleep(self.pause)
