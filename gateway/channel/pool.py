"""A channel's pool: ``connections`` logged-in CMPP connections, kept alive and kept busy.

Each connection slot has a task that logs in, waits for the connection to end and logs in
again after a capped, jittered backoff. A login refused for a reason that will not heal
(illegal source address, authentication error, version too high, a refused authenticator)
marks the channel unhealthy and leaves one slot probing at a slow cadence instead of hammering.
The first slot logs in alone; the others follow once it succeeds, so a wrong password costs one
attempt, not ``connections`` of them.

``submit`` paces the channel to its TPS, picks the open connection with the most free window,
and waits (until the caller's deadline) when there is none: the queue is the callers
themselves, never an unbounded buffer. Result 8 cools that connection down and sends again, up
to a cap; other results are returned or raised as they are.

A SUBMIT has N sends (the channel's ``max_sends``) that may go unanswered, in all, on
whatever connections carry it: the session resends it on its connection after T, and one that
goes to another connection takes only the sends it has left there. A connection declared dead
for want of answers counts every send of the SUBMITs waiting on it as unanswered; one lost
otherwise (closed by the ISMG or the network) cuts their last send short, which does not
count. A SUBMIT left unanswered by a dying connection is sent again on another connection
(policy "resend", the default: the ISMG may then deliver it twice), up to
``max_lost_resends`` times in a row, or raised as ``OutcomeUnknown`` (policy "report"); once
its N sends went unanswered it is raised as ``SendsExhausted``. Every resend the pool makes
is reported to ``on_resend`` with its reason (``flow_control``, ``connection_lost``).

A pool ``shared`` with other gateways on the same account (several instances, one store)
logs a slot in only while it is granted (``grant``: this gateway holds that slot of the
channel's ``connections``), gives one up gracefully (``release``: no new SUBMIT on it, its
window emptied, TERMINATE) or at once (``revoke``: the connection dropped), and paces to its
share of the channel's TPS: ``tps`` x the slots it holds / ``connections``, a slot counted
from ``ShareLimiter.WINDOW`` after its grant until its release begins, so that the shares
of all gateways add up to at most ``tps`` in any second, also while slots move.

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
from dataclasses import dataclass, field
from typing import NamedTuple

import cmpp
from cmpp import events as ev
from cmpp.session import SessionConfig
from cmpp.states import State
from gateway.config import ChannelConfig

from .connection import Connection, EventHandler
from .errors import (
    ConnectionClosed,
    GatewayError,
    LoginFailed,
    LoginRefused,
    OutcomeUnknown,
    SendsExhausted,
    SubmitThrottledError,
)
from .pacing import Backoff, DeadlineExceeded, ShareLimiter, TpsLimiter

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


class Submitted(NamedTuple):
    """A SUBMIT the ISMG accepted: its response, the connection that carried it, and how many
    times it was sent (all its sends on connections that failed under it, one on the
    connection that answered: a resend after T there is counted only in the metrics).
    A named tuple: one is made for every SUBMIT, and a tuple is the cheapest to make."""

    response: cmpp.SubmitResp
    connection: str
    sends: int
    lost: int = 0           # of which, resends after a connection died unanswered


@dataclass(frozen=True)
class ConnectionStatus:
    slot: int
    name: str
    state: str
    in_window: int
    window: int
    last_error: str | None


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    healthy: bool
    reason: str | None
    open: int
    wanted: int
    connections: tuple[ConnectionStatus, ...]
    slots: tuple[int, ...] | None = None     # a shared pool's slots held here (None: all)


class _Attempt:
    """One SUBMIT across its sends, on whatever connections carried them: sends in all, how
    many of them went unanswered (at most N in all), were answered with Result 8, or were
    lost with a connection."""

    __slots__ = ("sends", "unanswered", "throttled", "lost")

    def __init__(self) -> None:
        self.sends = self.unanswered = self.throttled = self.lost = 0


class _SentNow(_Attempt):
    """A SUBMIT sent by ``submit_now``: its attempt, and who is told its outcome (one object
    per SUBMIT, where a closure and an attempt would be two)."""

    __slots__ = ("pool", "slot", "connection", "submit", "on_done")

    def __init__(self, pool: ChannelPool, slot: _Slot, connection: str, submit: cmpp.Submit,
                 on_done: Callable[[Submitted | Exception], None]) -> None:
        self.sends, self.unanswered, self.throttled, self.lost = 1, 0, 0, 0
        self.pool, self.slot, self.connection, self.submit = pool, slot, connection, submit
        self.on_done = on_done

    def answered(self, answer: cmpp.SubmitResp | Exception) -> None:
        """Its outcome: done (Result 0), or handed to the pool to send again or give up."""
        if isinstance(answer, Exception):
            self.pool._resend_now(answer, self)
            return
        self.slot.throttled_in_a_row = 0
        self.pool._done(self.on_done, Submitted(answer, self.connection, self.sends, self.lost))


@dataclass
class _Slot:
    index: int
    connection: Connection | None = None
    last_error: str | None = None
    cooling_until: float = 0.0
    throttled_in_a_row: int = 0
    task: asyncio.Task | None = field(default=None, repr=False)
    granted: bool = True            # a shared pool's slot: this gateway holds it
    leaving: bool = False           # being released: no new SUBMIT on it
    counted: bool = True            # its share of the TPS is in the rate
    wake: asyncio.Event | None = field(default=None, repr=False)


def session_config(channel: ChannelConfig) -> SessionConfig:
    return SessionConfig(window=channel.window, response_timeout=channel.response_timeout,
                         max_sends=channel.max_sends, heartbeat_interval=channel.heartbeat_interval,
                         login_timeout=channel.connect_timeout,
                         refuse_bad_authenticator=channel.verify_authenticator == "refuse")


class ChannelPool:
    """The connections of one channel. ``await start()``, ``await submit(pdu)``,
    ``await close()`` (drain) or ``await abort()`` (now)."""

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
        self._slots = [_Slot(i, granted=not shared, counted=not shared)
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

    # ------------------------------------------------------------------------- slots

    async def _keep(self, slot: _Slot) -> None:
        """Keep one connection logged in for as long as the pool runs (a shared pool's slot:
        while it is granted); a bug in one round is logged and the slot carries on."""
        if slot.index > 0 and not self.shared:
            await asyncio.shield(self._first_login)
        while not self._closing:
            if not slot.granted:
                slot.wake = asyncio.Event()
                await slot.wake.wait()
                continue
            try:
                await self._keep_round(slot)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the slot must outlive any bug
                log.exception("%s#%d: unexpected error; reconnecting", self.channel.name, slot.index)
                slot.connection = None
                await asyncio.sleep(self.tuning.reconnect.cap)

    async def _keep_round(self, slot: _Slot) -> None:
        failures = 0
        while not self._closing and slot.granted:
            if self._refusal is not None and not self._probes(slot):
                await asyncio.sleep(self.tuning.refused_retry)   # one slot probes alone
                continue
            try:
                conn = await self._open(slot)
            except LoginFailed as error:
                failures += 1
                await asyncio.sleep(self._after_failure(slot, error, failures))
                continue
            failures = 0
            if not slot.granted:                     # given up while it logged in
                conn.abort()
                return
            self._on_open(slot, conn)
            closed = await conn.wait_closed()
            self._on_closed(slot, closed)
            if not self._closing:
                await asyncio.sleep(self.tuning.reconnect.delay(0, self._rng))

    async def _open(self, slot: _Slot) -> Connection:
        c = self.channel
        return await Connection.open(
            c.host, c.port, c.account, c.password, config=self._session_config,
            timeout=c.connect_timeout, name=f"{c.name}#{slot.index}",
            on_deliver=self.on_deliver, on_event=self._observe)

    def _probes(self, slot: _Slot) -> bool:
        """Whether this slot tries again after a refusal that will not heal: slot 0, or a
        shared pool's first granted slot."""
        if not self.shared:
            return slot.index == 0
        return slot is next((s for s in self._slots if s.granted), None)

    # ------------------------------------------------------------------------- shared slots

    def grant(self, index: int) -> None:
        """A shared pool: this gateway now holds slot ``index``; it logs in, and its share of
        the TPS counts from WINDOW seconds on (the gateway that held it before may have
        used that share within the last second)."""
        slot = self._slots[index]
        if slot.granted:
            return
        slot.granted, slot.leaving, slot.counted = True, False, False
        if slot.wake is not None:
            slot.wake.set()
        self._loop.call_later(ShareLimiter.WINDOW, self._count, slot)

    def _count(self, slot: _Slot) -> None:
        if slot.granted and not slot.leaving:
            slot.counted = True
            self._share_changed()

    def revoke(self, index: int) -> None:
        """A shared pool: slot ``index`` is no longer this gateway's (its database session
        was lost): its connection is dropped now, its SUBMITs in flight fail as a lost
        connection's do."""
        slot = self._slots[index]
        slot.granted, slot.leaving, slot.counted = False, False, False
        self._share_changed()
        if slot.connection is not None:
            slot.connection.abort()

    async def release(self, index: int, timeout: float | None = None) -> None:
        """A shared pool: give slot ``index`` up gracefully: its share of the TPS goes at
        once, no new SUBMIT goes on it, the SUBMITs on it are answered (at most ``timeout``,
        the drain timeout by default), then TERMINATE; returns once it is closed."""
        slot = self._slots[index]
        if not slot.granted:
            return
        slot.leaving, slot.counted = True, False
        self._share_changed()
        loop = asyncio.get_running_loop()
        end = loop.time() + (timeout or self.tuning.drain_timeout)
        conn = slot.connection
        while conn is not None and conn.is_open and conn.in_window and loop.time() < end:
            await asyncio.sleep(0.01)
        slot.granted = False
        if conn is not None:
            await conn.close()
        slot.leaving = False

    @property
    def rate(self) -> float | None:
        """A shared pool's share of the TPS now (None: no TPS)."""
        return self._limiter.rate if isinstance(self._limiter, ShareLimiter) else None

    @property
    def granted(self) -> tuple[int, ...]:
        """The slots this gateway holds (every slot, unless the pool is shared)."""
        return tuple(s.index for s in self._slots if s.granted)

    def _share_changed(self) -> None:
        """Pace to tps x the slots counted / connections; a larger share may send at once."""
        if not isinstance(self._limiter, ShareLimiter):
            return
        old = self._limiter.rate
        counted = sum(1 for s in self._slots if s.counted)
        self._limiter.set_rate(self.channel.tps * counted / len(self._slots))
        if self._limiter.rate > old and self._loop is not None:
            self._wake_all()
            self._window_freed()

    def _after_failure(self, slot: _Slot, error: LoginFailed, failures: int) -> float:
        slot.last_error = str(error)
        if isinstance(error, LoginRefused) and not error.retryable:
            if self._refusal is None:
                log.error("%s: %s; trying again every %g s", self.channel.name, error,
                          self.tuning.refused_retry)
            self._refusal = str(error)
            self._release_followers()
            return self.tuning.refused_retry
        log.warning("%s#%d: %s (attempt %d)%s", self.channel.name, slot.index, error, failures,
                    "; the account may allow fewer connections than configured"
                    if isinstance(error, LoginRefused) and self.open_connections else "")
        return self.tuning.reconnect.delay(failures, self._rng)

    def _on_open(self, slot: _Slot, conn: Connection) -> None:
        slot.connection, slot.last_error = conn, None
        slot.throttled_in_a_row, slot.cooling_until = 0, 0.0
        log.info("%s: logged in to %s:%d", conn.name, self.channel.host, self.channel.port)
        if self._refusal is not None:
            log.info("%s: login accepted again", self.channel.name)
        self._refusal = None
        self._release_followers()
        self._wake(conn.window_free)
        self._window_freed()

    def _on_closed(self, slot: _Slot, event: ev.ConnectionTerminated) -> None:
        slot.connection = None
        if not self._closing and slot.granted:         # not given up by this gateway
            slot.last_error = event.reason
            log.warning("%s#%d: connection ended: %s", self.channel.name, slot.index, event.reason)

    def _release_followers(self) -> None:
        if self._first_login is not None and not self._first_login.done():
            self._first_login.set_result(None)

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
            return await self._submit(submit, deadline, _Attempt())
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
        sent = _SentNow(self, slot, conn.name, submit, on_done)
        conn.submit_soon(submit, sent.answered)
        self._begin()
        return True

    def _resend_now(self, answer: Exception, sent: _SentNow) -> None:
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
                      attempt: _Attempt) -> Submitted:
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

    def _count_failure(self, slot: _Slot, error: Exception, attempt: _Attempt) -> None:
        """A send of this SUBMIT failed: return to send it again, or raise. Result 8 cools
        the connection and is sent again up to the cap. A SUBMIT lost with its connection is
        sent again under policy "resend", up to the cap of lost connections in a row, while
        it has sends left that may go unanswered (N in all; SendsExhausted once none are
        left). One that never left does not count."""
        if isinstance(error, SubmitThrottledError):
            attempt.throttled += 1
            self._cool(slot)
            if attempt.throttled > self.tuning.max_throttled_sends:
                raise error
            self._count_resend("flow_control")
        elif isinstance(error, OutcomeUnknown):
            attempt.sends += error.sends - 1          # the session's resends on that link
            attempt.unanswered += error.timed_out
            attempt.lost += 1
            if attempt.unanswered >= self.channel.max_sends:
                raise SendsExhausted(f"no response to {attempt.unanswered} sends in all "
                                     f"({error.reason})", error.sends, error.timed_out) from error
            if (self.channel.on_connection_lost == "report" or self._closed
                    or attempt.lost > self.tuning.max_lost_resends):
                raise error
            self._count_resend("connection_lost")
        elif isinstance(error, ConnectionClosed):
            attempt.sends -= 1               # it never left: not a send
        else:
            raise error

    def _count_resend(self, reason: str) -> None:
        if self.on_resend is not None:
            self.on_resend(reason)

    def _free_slot(self, now: float | None = None) -> tuple[_Slot | None, float | None]:
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

    async def _pick(self, deadline: float | None) -> _Slot:
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

    def _cool(self, slot: _Slot) -> None:
        slot.throttled_in_a_row += 1
        delay = self.tuning.throttle.delay(slot.throttled_in_a_row - 1, self._rng)
        slot.cooling_until = asyncio.get_running_loop().time() + delay

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

    # ------------------------------------------------------------------------- status

    @property
    def open_connections(self) -> int:
        return sum(1 for s in self._slots if s.connection is not None and s.connection.is_open)

    def status(self) -> ChannelStatus:
        """What an operator needs: per connection its state, window in use and last error;
        for the channel, healthy or not and why."""
        conns = tuple(ConnectionStatus(
            s.index, f"{self.channel.name}#{s.index}",
            s.connection.state.value if s.connection else "disconnected",
            s.connection.in_window if s.connection else 0, self.channel.window, s.last_error)
            for s in self._slots)
        open_count = self.open_connections
        granted = self.granted
        reason = self._refusal or (None if open_count or not granted else
                                   next((s.last_error for s in self._slots if s.last_error),
                                        "no connection open"))
        # A shared pool that holds no slot is not down: the other gateways hold them.
        healthy = (open_count > 0 or not granted) and self._refusal is None
        return ChannelStatus(self.channel.name, healthy, reason, open_count, len(granted), conns,
                             granted if self.shared else None)


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
