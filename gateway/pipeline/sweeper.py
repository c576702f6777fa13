"""The store's housekeeping: what keeps it from growing without end.

A sweep starts every ``interval`` seconds. It ends ``unknown`` the messages that had no final
report within ``report_timeout``, then runs four passes: status reports that matched no
message are dropped after ``unmatched_report_timeout`` (and counted), finished messages and MO
go after ``retention`` with everything that hangs off them, and idempotency keys (stored API
answers, messages' keys) after ``idempotency_window``. The passes take turns, one store
operation of ``batch`` rows each, with a short pause after every round, so that the hot
path's operations go on between them: a batch of 256 messages (with their rows) takes 3 to
6 ms of the store's writer, and the passes remove 12 to 18 thousand messages a second at most
(measured on a loaded and a quiet 2-CPU machine), more than the gateway takes in. A sweep stops at 90% of the interval, and the passes not done
go on from where they stopped at the next sweep: a large backlog (retention turned on for an
old store) is worked off over several sweeps without holding up the report timeout. A store
error is logged, and the next sweep tries again.
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
        loop, wait = asyncio.get_running_loop(), self.interval
        while True:
            await asyncio.sleep(wait)
            started = loop.time()
            try:
                await self.sweep()
            except Exception as error:  # noqa: BLE001 - the next sweep tries again
                log.error("store housekeeping failed (%s: %s); trying again in %g s",
                          type(error).__name__, error, self.interval)
            wait = max(0.0, started + self.interval - loop.time())

    async def sweep(self, deadline: float | None = None) -> dict[str, Counter]:
        """One round of housekeeping, until every pass is done or the loop's clock reaches
        ``deadline`` (default: 90% of the interval from now); returns the rows each pass
        removed, by table."""
        s, now, loop = self.settings, self.clock(), asyncio.get_running_loop()
        expired = await self.store.expire_reports(now, s.report_timeout)
        if expired:
            log.warning("%d message(s) had no status report within %g s: unknown",
                        len(expired), s.report_timeout)
        done = await self._passes({
            "unmatched": (self.store.expire_unmatched_receipts,
                          now - s.unmatched_report_timeout),
            "messages": (self.store.prune_messages, now - s.retention),
            "mo": (self.store.prune_mo, now - s.retention),
            "idempotency": (self.store.forget_idempotency_keys,
                            now - self.api.idempotency_window),
        }, loop.time() + self.interval * 0.9 if deadline is None else deadline)
        self.metrics.unmatched_expired(done["unmatched"]["receipts"])
        for name in ("messages", "mo", "idempotency"):
            self.metrics.pruned(done[name])
        if done["unmatched"]["receipts"]:
            log.info("%d status report(s) matched no message within %g s: dropped",
                     done["unmatched"]["receipts"], s.unmatched_report_timeout)
        return done

    async def _passes(self, passes: dict, deadline: float) -> dict[str, Counter]:
        """Run the passes (name: (store step, before)) in turns, one batch each a round."""
        loop = asyncio.get_running_loop()
        totals = {name: Counter() for name in passes}
        going = {name: self._after.pop(name, 0) for name in passes}
        while going:
            for name, after in list(going.items()):
                step, before = passes[name]
                pruned = await step(before, after, self.batch)
                totals[name].update(pruned.rows)
                if pruned.after is None:
                    del going[name]
                else:
                    going[name] = pruned.after
            if going and loop.time() >= deadline:
                self._after.update(going)               # the next sweep goes on from here
                break
            await asyncio.sleep(self.pause)
        return totals
