"""The slots of a channel's pool: each keeps one connection logged in, and says how it is.

``PoolSlots`` is the part of ``ChannelPool`` that looks after its ``connections`` slots (a
base class of the pool: it keeps no state of its own, it works on the pool's ``_slots``,
``_refusal``, ``_first_login``, ``_limiter`` and settings, and wakes the pool's waiters).

Each connection slot has a task that logs in, waits for the connection to end and logs in
again after a capped, jittered backoff. A login refused for a reason that will not heal
(illegal source address, authentication error, version too high, a refused authenticator)
marks the channel unhealthy and leaves one slot probing at a slow cadence instead of hammering.
The first slot logs in alone; the others follow once it succeeds, so a wrong password costs one
attempt, not ``connections`` of them. A slot's task ends only with the pool: a failed login
waits out its backoff and tries again, and a bug in one round is logged and the slot carries
on after the longest backoff.

A pool ``shared`` with other gateways on the same account (several instances, one store)
logs a slot in only while it is granted (``grant``: this gateway holds that slot of the
channel's ``connections``), gives one up gracefully (``release``: no new SUBMIT on it, its
window emptied, TERMINATE) or at once (``revoke``: the connection dropped), and paces to its
share of the channel's TPS: ``tps`` x the slots it holds / ``connections``, a slot counted
from ``ShareLimiter.WINDOW`` after its grant until its release begins, so that the shares
of all gateways add up to at most ``tps`` in any second, also while slots move.

``status()`` tells an operator how the channel is: a ``ChannelStatus`` with a
``ConnectionStatus`` per slot.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from cmpp import events as ev

from .connection import Connection
from .errors import LoginFailed, LoginRefused
from .pacing import ShareLimiter

log = logging.getLogger("cmpp_gateway.pool")


@dataclass(frozen=True)
class ConnectionStatus:
    """One slot's connection as ``ChannelPool.status`` reports it."""

    slot: int
    name: str
    state: str
    in_window: int
    window: int
    last_error: str | None


@dataclass(frozen=True)
class ChannelStatus:
    """A channel as ``ChannelPool.status`` reports it: healthy or not and why, connections
    open of those wanted, and each one."""

    channel: str
    healthy: bool
    reason: str | None
    open: int
    wanted: int
    connections: tuple[ConnectionStatus, ...]
    slots: tuple[int, ...] | None = None     # a shared pool's slots held here (None: all)


@dataclass
class Slot:
    """One of a pool's ``connections``: its connection (None while it is down), why the
    last one failed, its cooling after Result 8, its task, and a shared pool's hold on it."""

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


class PoolSlots:
    """The slots of a ``ChannelPool``; see the module docstring."""

    # ------------------------------------------------------------------------- slots

    async def _keep(self, slot: Slot) -> None:
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

    async def _keep_round(self, slot: Slot) -> None:
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

    async def _open(self, slot: Slot) -> Connection:
        c = self.channel
        return await Connection.open(
            c.host, c.port, c.account, c.password, config=self._session_config,
            timeout=c.connect_timeout, name=f"{c.name}#{slot.index}",
            on_deliver=self.on_deliver, on_event=self._observe)

    def _probes(self, slot: Slot) -> bool:
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

    def _count(self, slot: Slot) -> None:
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

    def _after_failure(self, slot: Slot, error: LoginFailed, failures: int) -> float:
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

    def _on_open(self, slot: Slot, conn: Connection) -> None:
        slot.connection, slot.last_error = conn, None
        slot.throttled_in_a_row, slot.cooling_until = 0, 0.0
        log.info("%s: logged in to %s:%d", conn.name, self.channel.host, self.channel.port)
        if self._refusal is not None:
            log.info("%s: login accepted again", self.channel.name)
        self._refusal = None
        self._release_followers()
        self._wake(conn.window_free)
        self._window_freed()

    def _on_closed(self, slot: Slot, event: ev.ConnectionTerminated) -> None:
        slot.connection = None
        if not self._closing and slot.granted:         # not given up by this gateway
            slot.last_error = event.reason
            log.warning("%s#%d: connection ended: %s", self.channel.name, slot.index, event.reason)

    def _release_followers(self) -> None:
        if self._first_login is not None and not self._first_login.done():
            self._first_login.set_result(None)

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
