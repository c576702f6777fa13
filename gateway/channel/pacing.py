"""Pacing: capped, jittered backoff, and the TPS limiter a channel's submits pass through."""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from dataclasses import dataclass

from .errors import GatewayError


class DeadlineExceeded(GatewayError):
    """No connection, window or TPS budget became free before the caller's deadline."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with equal jitter: attempt n waits between half and all of
    min(cap, base * 2**n) seconds."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        full = min(self.cap, self.base * (2 ** min(attempt, 30)))
        return full / 2 + (rng or random).random() * full / 2



class TpsLimiter:
    """Paces callers to ``rate`` per second (0: no limit), one at a time in arrival order.

    GCRA evaluated when each caller actually passes, not reserved in advance: the theoretical
    arrival time (TAT) moves on by one interval per pass, and a caller may pass up to
    ``tolerance`` ahead of it. The event loop's timers are only as fine as a millisecond, so at
    2,000/s and above one wake-up must let several callers through: from 200/s up, the
    tolerance is ``burst`` = rate x 5 ms passes (rounded down), and the interval is that of
    rate - burst per second, so that a burst and a full second after it together pass no more
    than ``rate`` (+1, a late wake-up's catch-up) in any second an ISMG may count; the long-run
    rate is 0.5% under the limit. A caller that had to wait and woke up late catches up its lateness, at most one
    interval, so timer jitter under load does not drag the rate down; a caller that finds the
    limiter idle starts afresh, so idle time earns nothing beyond the tolerance."""

    BURST_WINDOW = 0.005

    def __init__(self, rate: float) -> None:
        burst = math.floor(rate * self.BURST_WINDOW) if rate > 0 else 0
        self.interval = 1.0 / (rate - burst) if rate > 0 else 0.0
        self.tolerance = burst * self.interval
        self._tat = 0.0
        self._queued = 0
        self._turned_away = False
        self._lock = asyncio.Lock()

    async def acquire(self, deadline: float | None) -> None:
        """Wait for this caller's turn; DeadlineExceeded (taking no turn) when it would come
        after ``deadline``."""
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        turn = max(self._tat, now) + self._queued * self.interval - self.tolerance
        if deadline is not None and turn > deadline:
            raise DeadlineExceeded("TPS budget exhausted until after the deadline")
        self._queued += 1
        try:
            async with self._lock:
                now = loop.time()
                if self._tat - now > self.tolerance:
                    await asyncio.sleep(self._tat - self.tolerance - now)
                    now = loop.time()
                    self._tat = max(self._tat, now - self.tolerance - self.interval) \
                        + self.interval
                else:
                    self._tat = max(self._tat, now) + self.interval
        finally:
            self._queued -= 1

    def try_pass(self, now: float) -> float | None:
        """For a caller that does not wait: pass now (None), or the loop time from which it
        may (callers waiting in ``acquire`` go first). The same GCRA as ``acquire``: a caller
        turned away that comes back when told catches up a late wake-up, at most one
        interval."""
        if not self.interval:
            return None
        if self._queued:
            return now + self.interval
        if self._tat - now > self.tolerance:
            self._turned_away = True
            return self._tat - self.tolerance
        if self._turned_away:
            self._turned_away = False
            self._tat = max(self._tat, now - self.tolerance - self.interval) + self.interval
        else:
            self._tat = max(self._tat, now) + self.interval
        return None


class _Spacing(TpsLimiter):
    """A ShareLimiter's GCRA: bursts of 20 ms of its rate (the limiter's window bounds the
    seconds)."""

    BURST_WINDOW = 0.02


class ShareLimiter:
    """Paces a pool that holds a share of its channel's TPS (several gateways on one account):
    ``set_rate`` changes the share as slots come and go, and at most floor(rate) callers
    pass in any ``WINDOW`` seconds (one, below a rate of 1), on top of the GCRA's spacing,
    so that shares whose sum is the channel's ``tps`` never let more than ``tps`` through in
    any second, whenever each of them changes. WINDOW is a second and ``GUARD``: the center
    counts SUBMITs as they arrive, and the gateways' budgets add up to exactly ``tps``, so
    that a few milliseconds more on one SUBMIT's way than on the next would let one second's
    last SUBMIT be counted in the next second; the guard absorbs up to 50 ms of that, for
    5% of the rate. A rate of 0 lets nothing through.

    The window bounds every second, so the GCRA only spaces the passes out: in bursts of
    20 ms of the rate (``_Spacing``) rather than a TpsLimiter's 5 ms. A share is a fraction of
    the account's rate, and at 5 ms each of N gateways would wake up as often as one gateway
    with the whole rate, for a burst N times smaller, and lose as much to each late wake-up
    (on a loaded machine, two gateways sharing tps = 1000 sent 6% less than one)."""

    GUARD = 0.05
    WINDOW = 1.0 + GUARD

    def __init__(self) -> None:
        self.rate = 0.0
        self.most = 0
        self._gcra = TpsLimiter(0)
        self._passes: deque[float] = deque()          # loop times of the last ``most`` passes

    @property
    def interval(self) -> float:
        """Never 0 (which a TpsLimiter uses for "no limit"): the pool always asks."""
        return self._gcra.interval or self.WINDOW

    def set_rate(self, rate: float) -> None:
        if rate == self.rate:
            return
        self.rate = rate
        self.most = 0 if rate <= 0 else max(1, math.floor(rate))
        self._gcra = _Spacing(rate) if rate > 0 else TpsLimiter(0)

    def try_pass(self, now: float) -> float | None:
        """Pass now (None), or the loop time from which it may be worth asking again."""
        if self.most == 0:
            return now + self.WINDOW
        passes = self._passes
        while passes and passes[0] <= now - self.WINDOW:
            passes.popleft()
        if len(passes) >= self.most:
            return passes[-self.most] + self.WINDOW
        turn = self._gcra.try_pass(now)
        if turn is None:
            passes.append(now)
        return turn

    async def acquire(self, deadline: float | None) -> None:
        """Wait for a pass; DeadlineExceeded when none comes before ``deadline``."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            turn = self.try_pass(now)
            if turn is None:
                return
            if deadline is not None and turn > deadline:
                raise DeadlineExceeded("TPS budget exhausted until after the deadline")
            await asyncio.sleep(max(turn - now, 0.001))
