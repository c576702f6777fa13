"""A channel's pool: ``connections`` logged-in CMPP connections, kept alive and kept busy.

This module holds ``ChannelPool`` itself (its lifecycle and the way each SUBMIT finds a
connection), ``ChannelPools``, ``PoolTuning``, ``PoolClosed`` and ``session_config``. Two
modules make up the rest of the pool, as its base classes: ``slots`` keeps each connection
slot logged in (backoff, refusals that will not heal, a shared pool's grants) and reports
how the channel is (``ChannelStatus``); ``sends`` counts a SUBMIT's sends across connections
and decides whether a failed one is sent again (``Submitted``, the resend policies). Their
public names (``Submitted``, ``ChannelStatus``, ``ConnectionStatus``) are offered here too.

``submit`` paces the channel to its TPS, picks the open connection with the most free window,
and waits (until the caller's deadline) when there is none: the queue is the callers
themselves, never an unbounded buffer. Result 8 cools that connection down and sends again, up
to a cap; other results are returned or raised as they are.

``submit_now`` is the same without waiting, for a caller that keeps its own queue (the
dispatcher): it sends at once or returns False, and the pool calls ``on_window_free`` when a
window frees, a connection opens, a cooling ends or the TPS budget allows another; the caller
then tries again, inside the same read that freed the window, so the window refills at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cmpp
from cmpp import events as ev
from cmpp.session import SessionConfig
from cmpp.states import State
from gateway.config import ChannelConfig

from .connection import Connection, EventHandler
from .errors import ConnectionClosed, GatewayError
from .pacing import Backoff, DeadlineExceeded, ShareLimiter, TpsLimiter
from .sends import Attempt, PoolResends, SentNow, Submitted
from .slots import ChannelStatus, ConnectionStatus, PoolSlots, Slot

__all__ = ["ChannelPool", "ChannelPools", "ChannelStatus", "ConnectionStatus", "PoolClosed",
           "PoolTuning", "Submitted", "session_config"]

log = logging.getLogger("cmpp_gateway.pool")

ESTABLISHED = State.ESTABLISHED


class PoolClosed(ConnectionClosed):
    """The pool is draining or closed and takes no more submits."""


@dataclass(frozen=True)
class PoolTuning:
    """Timings of the pool itself (the session's timers come from the channel)."""

    reconnect: Backoff = Backoff(0.5, 30.0)
    refused_retry: float = 300.0        # slow probe after a login refusal that will not heal
    throttle: Backoff = Backoff(0.05, 5.0)
    max_throttled_sends: int = 30       # Result 8 resends of one SUBMIT before giving up
    max_lost_resends: int = 3           # "resend" policy: resends after lost connections in a row
    drain_timeout: float = 30.0


def session_config(channel: ChannelConfig) -> SessionConfig:
    return SessionConfig(window=channel.window, response_timeout=channel.response_timeout,
                         max_sends=channel.max_sends, heartbeat_interval=channel.heartbeat_interval,
                         login_timeout=channel.connect_timeout,
                         refuse_bad_authenticator=channel.verify_authenticator == "refuse")


class ChannelPool(PoolSlots, PoolResends):
    """The connections of one channel. ``await start()``, ``await submit(pdu)``,
    ``await close()`` (drain) or ``await abort()`` (now). Its slots' methods are in
    ``slots.PoolSlots``, its resend rules in ``sends.PoolResends``."""

    def __init__(self, channel: ChannelConfig, *, tuning: PoolTuning | None = None,
                 on_deliver: EventHandler | None = None, on_event: EventHandler | None = None,
                 on_resend: Callable[[str], None] | None = None,
                 rng: random.Random | None = None, shared: bool = False) -> None:
        self.channel = channel
        self.tuning = tuning or PoolTuning()
        self.on_deliver = on_deliver
        self.on_event = on_event
        self.on_resend = on_resend      # called with the reason of each resend of ours
        self._rng = rng or random.Random()
        self._session_config = session_config(channel)
        self.shared = shared
        self._slots = [Slot(i, granted=not shared, counted=not shared)
                       for i in range(channel.connections)]
        # A shared pool paces to its share of the TPS; without a TPS there is nothing to share.
        self._limiter = ShareLimiter() if shared and channel.tps else TpsLimiter(channel.tps)
        self._waiters: deque[asyncio.Future] = deque()
        self._first_login: asyncio.Future | None = None
        self._refusal: str | None = None
        self._closing = False       # draining: no new submits
        self._closed = False        # done: nothing more will be sent
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_window_free: Callable[[], None] | None = None   # see submit_now
        self._free_timer: asyncio.TimerHandle | None = None
        self._resends: set[asyncio.Task] = set()

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the slot tasks; returns at once (connections come up in the background)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._first_login = loop.create_future()
        self._idle = asyncio.Event()
        self._idle.set()
        for slot in self._slots:
            slot.task = loop.create_task(self._keep(slot), name=f"{self.channel.name}#{slot.index}")

    async def wait_ready(self, count: int | None = None, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections (default: all) are open; TimeoutError otherwise."""
        wanted = len(self.granted) if count is None else count
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.open_connections < wanted:
            if loop.time() >= end:
                raise TimeoutError(f"{self.open_connections} of {wanted} connections open")
            await asyncio.sleep(0.01)

    async def close(self, timeout: float | None = None) -> None:
        """Drain: refuse new submits, wait (bounded) for those in flight, TERMINATE every
        connection, and end every task."""
        self._closing = True
        if self._in_flight:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout or self.tuning.drain_timeout)
            except asyncio.TimeoutError:
                log.warning("%s: drain timed out with %d submits in flight",
                            self.channel.name, self._in_flight)
        await self._stop_tasks()
        await asyncio.gather(*(s.connection.close() for s in self._slots if s.connection),
                             return_exceptions=True)
        self._closed = True
        self._wake_all()

    async def abort(self) -> None:
        """Stop now: drop every connection (waiting submits fail) and end every task."""
        self._closing = True
        await self._stop_tasks()
        for slot in self._slots:
            if slot.connection is not None:
                slot.connection.abort()
        self._closed = True
        self._wake_all()

    async def _stop_tasks(self) -> None:
        if self._free_timer is not None:
            self._free_timer.cancel()
        tasks = [s.task for s in self._slots if s.task is not None] + list(self._resends)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------- submitting

    async def submit(self, submit: cmpp.Submit, deadline: float | None = None) -> Submitted:
        """Send one SUBMIT through the channel; return it acknowledged (Result 0).

        ``deadline`` is on the loop's clock. Raises ``SubmitRejectedError`` (definitive
        Result), ``SubmitThrottledError`` (Result 8 beyond the resend cap), ``SendsExhausted``
        (N sends unanswered), ``OutcomeUnknown`` (a lost connection under policy "report",
        or more than ``max_lost_resends`` in a row), ``DeadlineExceeded`` (nothing free in
        time), ``PoolClosed``, ValueError (a field that does not fit)."""
        if self._closing:
            raise PoolClosed(f"channel {self.channel.name} is closing")
        self._begin()
        try:
            return await self._submit(submit, deadline, Attempt())
        finally:
            self._end()

    def submit_now(self, submit: cmpp.Submit,
                   on_done: Callable[[Submitted | Exception], None]) -> bool:
        """Send one SUBMIT now if a connection has window free, the TPS budget allows and no
        ``submit`` caller is waiting; False (nothing sent) otherwise, and ``on_window_free``
        is called when it is worth trying again. Once sent, ``on_done`` receives what
        ``submit`` would have returned or raised, resends included. Raises ValueError (a
        field that does not fit; nothing is sent)."""
        if self._closing or self._waiters:
            return False
        slot, cooling = self._free_slot()
        if slot is None:
            if cooling is not None:
                self._window_free_at(cooling)
            return False
        if self._limiter.interval:
            turn = self._limiter.try_pass(self._loop.time())
            if turn is not None:
                self._window_free_at(turn)
                return False
        conn = slot.connection
        sent = SentNow(self, slot, conn.name, submit, on_done)
        conn.submit_soon(submit, sent.answered)
        self._begin()
        return True

    def _resend_now(self, answer: Exception, sent: SentNow) -> None:
        """A ``submit_now`` send failed: sent again as ``submit`` would, or given up."""
        try:
            self._count_failure(sent.slot, answer, sent)
        except Exception as final:  # noqa: BLE001 - handed to the caller
            self._done(sent.on_done, final)
            return
        on_done = sent.on_done
        resend = self._loop.create_task(self._submit(sent.submit, None, sent))
        self._resends.add(resend)
        resend.add_done_callback(lambda t: self._resent(t, on_done))

    def _resent(self, task: asyncio.Task, on_done) -> None:
        self._resends.discard(task)
        if task.cancelled():
            self._done(on_done, PoolClosed(f"channel {self.channel.name} is closed"))
        else:
            self._done(on_done, task.exception() or task.result())

    def _done(self, on_done, outcome) -> None:
        self._end()
        on_done(outcome)

    def _begin(self) -> None:
        self._in_flight += 1
        if self._in_flight == 1:
            self._idle.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    async def _submit(self, submit: cmpp.Submit, deadline: float | None,
                      attempt: Attempt) -> Submitted:
        if self._limiter.interval:          # a ShareLimiter's is never 0
            await self._limiter.acquire(deadline)
        while True:
            slot = await self._pick(deadline)
            conn = slot.connection
            attempt.sends += 1
            left = self.channel.max_sends - attempt.unanswered if attempt.unanswered else None
            try:                          # _pick saw it open with window: no await since
                response = await conn.submit_nowait(submit, left)
            except GatewayError as error:
                self._count_failure(slot, error, attempt)
                continue
            slot.throttled_in_a_row = 0
            return Submitted(response, conn.name, attempt.sends, attempt.lost)

    def _free_slot(self, now: float | None = None) -> tuple[Slot | None, float | None]:
        """The open, not cooling connection with the most free window (or None), and when
        the first cooling one cools down (or None). The clock is read (unless given) only
        when a connection has been cooling."""
        best, best_free, cooling = None, 0, None
        for slot in self._slots:
            conn = slot.connection
            if conn is None or slot.leaving:
                continue
            session = conn.session
            free = session.window_free
            if free <= best_free or session.state is not ESTABLISHED:
                continue
            until = slot.cooling_until
            if until:
                if now is None:
                    now = self._loop.time()
                if until > now:
                    cooling = until if cooling is None else min(cooling, until)
                    continue
                slot.cooling_until = 0.0                # cooled down
            best, best_free = slot, free
        return best, cooling

    async def _pick(self, deadline: float | None) -> Slot:
        """The open, not cooling connection with the most free window; wait for one."""
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise PoolClosed(f"channel {self.channel.name} is closed")
            best, cooling = self._free_slot(loop.time())
            if best is not None:
                return best
            await self._wait(deadline, cooling)

    def _window_free_at(self, when: float) -> None:
        """Call ``on_window_free`` at ``when`` (loop time), unless a call is due sooner."""
        timer = self._free_timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._free_timer = self._loop.call_at(when, self._on_free_timer)

    def _on_free_timer(self) -> None:
        self._free_timer = None
        self._window_freed()

    def _window_freed(self) -> None:
        if self.on_window_free is not None and not self._closing:
            self.on_window_free()

    async def _wait(self, deadline: float | None, wake_at: float | None) -> None:
        loop = asyncio.get_running_loop()
        limit = min(t for t in (deadline, wake_at) if t is not None) \
            if deadline is not None or wake_at is not None else None
        if deadline is not None and loop.time() >= deadline:
            raise DeadlineExceeded(f"no connection of {self.channel.name} free before the deadline")
        waiter = loop.create_future()
        self._waiters.append(waiter)
        try:
            if limit is None:
                await waiter
            else:
                await asyncio.wait_for(waiter, max(0.0, limit - loop.time()))
        except asyncio.TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise DeadlineExceeded(
                    f"no connection of {self.channel.name} free before the deadline") from None
        finally:
            if not waiter.done():
                waiter.cancel()

    def _wake(self, count: int = 1) -> None:
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def _wake_all(self) -> None:
        self._wake(len(self._waiters))

    def _observe(self, conn: Connection, event: ev.Event) -> None:
        if isinstance(event, _FREES_WINDOW):
            if self._waiters:
                self._wake()
            self._window_freed()
        elif isinstance(event, ev.ConnectionTerminated):
            self._wake_all()
        if self.on_event is not None:
            self.on_event(conn, event)



_FREES_WINDOW = (ev.SubmitAcknowledged, ev.SubmitThrottled, ev.SubmitRejected, ev.RequestTimedOut)


class ChannelPools:
    """Every channel's pool, side by side: one per provider account."""

    def __init__(self, pools: dict[str, ChannelPool]) -> None:
        self.pools = pools

    def __getitem__(self, name: str) -> ChannelPool:
        return self.pools[name]

    async def start(self) -> None:
        for pool in self.pools.values():
            await pool.start()

    async def close(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(p.close(timeout) for p in self.pools.values()))

    async def abort(self) -> None:
        await asyncio.gather(*(p.abort() for p in self.pools.values()))

    def status(self) -> list[ChannelStatus]:
        return [p.status() for p in self.pools.values()]
