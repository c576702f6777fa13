"""Several gateways on one store: each channel's ``connections`` shared out as slots.

``SlotKeeper`` holds this gateway's membership (the store's ClusterSession) and, once a second,
renews it and moves slots: each live gateway aims at its fair share of each channel's slots
(``connections`` // gateways, one more for the first ``connections`` % gateways by id); it
takes a free slot it is short of, and gives one up gracefully (no new SUBMIT, its window
emptied, TERMINATE) while it holds more than its share and another gateway holds fewer. A
slot's pool connection logs in only while the slot is held; the pool paces to tps x slots
held / connections (gateway.channel.slots), so the count and the rate are totals.

The rules that keep them totals whatever fails:
- a slot is held by holding its advisory lock in this gateway's database session;
- a gateway that loses its session (the database closed it, or it broke) drops its CMPP
  connections at once; one whose session stops answering drops them ``HOLD`` seconds after the
  last heartbeat that was answered, and ends the session;
- a slot whose lock is free is taken at once only when it was given up cleanly (its last
  holder is none, or this gateway); a slot whose holder vanished is taken once its lock was
  seen free for ``TAKEOVER`` seconds (more than HOLD): by then that holder, if it still runs,
  has dropped its connection, whatever the database said to whom meanwhile;
- a gateway whose instance lock was seen free for TAKEOVER seconds is forgotten: its row goes,
  and its claims on messages and callbacks are the survivors' (gateway.pipeline.fetcher
  decides its messages in flight under the channel's on_connection_lost). A gateway that
  comes back to find itself forgotten forgets what it had claimed and joins under a new id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.channel import ChannelPool
from gateway.store import StoreUnavailable

log = logging.getLogger("cmpp_gateway.slots")

HEARTBEAT = 1.0        # seconds between two heartbeats
HOLD = 5.0             # no heartbeat answered for this long: drop every CMPP connection
TAKEOVER = 8.0         # a vanished holder's slot (or instance) is taken after this long
SWEEP_EVERY = 60       # heartbeats between two sweeps of expired repeat keys and app seconds


def fair_share(connections: int, alive: list[int], me: int) -> int:
    """This gateway's share of ``connections`` slots among the gateways ``alive`` (ids)."""
    if me not in alive:
        return 0
    rank, count = sorted(alive).index(me), len(alive)
    return connections // count + (1 if rank < connections % count else 0)


class SlotKeeper:
    """Keeps this gateway's share of every channel's slots (see the module). ``on_lost``
    is called with a channel's name when this gateway no longer holds any of its slots,
    ``on_forgotten`` when the others took this gateway for dead (what it claimed is theirs),
    and ``on_unsubscribed`` with the numbers unsubscribed lately, by an MO to any gateway
    (each heartbeat reads them: every gateway learns them within a few seconds)."""

    def __init__(self, store, pools: dict[str, ChannelPool],
                 on_lost: Callable[[str], None] = lambda channel: None,
                 on_forgotten: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] | None = None,
                 on_unsubscribed: Callable[[frozenset[str]], None] = lambda numbers: None
                 ) -> None:
        self.store = store
        self.pools = pools
        self.on_lost = on_lost
        self.on_forgotten = on_forgotten
        self.on_unsubscribed = on_unsubscribed
        self.session = store.cluster_session()
        self.held: dict[str, set[int]] = {name: set() for name in pools}
        self.cluster: dict[str, int] = {name: 0 for name in pools}   # slots held by anyone
        self.alive = 0                                                # gateways alive
        self._clock = clock
        self._free_since: dict[tuple, float] = {}      # (channel, slot, holder) or ("i", n)
        self._releasing: dict[str, asyncio.Task] = {}
        self._last_answer = 0.0
        self._beats = 0
        self._task: asyncio.Task | None = None
        self.closing = False               # stopping: takes and gives up no slot any more

    @property
    def id(self) -> int | None:
        return self.session.id

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def start(self) -> None:
        """Join (StoreUnavailable when the database cannot be reached) and take the free
        slots of this gateway's share, then keep the slots in the background."""
        await self.store.join_cluster(self.session, list(self.pools))
        self._last_answer = self._now()
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="slots")

    async def close(self) -> None:
        """Stop; give every slot up (the pools' connections must be closed by then) and
        leave the cluster."""
        tasks = [t for t in (self._task, *self._releasing.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        await self.session.leave()

    # ------------------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while True:
            await self._wait()
            if self.session.connected:
                await self._beat()
            else:
                await self._rejoin()

    async def _wait(self) -> None:
        """A heartbeat's time; a session lost meanwhile drops every connection at once."""
        if not self.session.connected:
            if any(self.held.values()):
                self._lose("the database session was lost")
            await asyncio.sleep(HEARTBEAT)
            return
        lost = self.session.lost
        try:
            await asyncio.wait_for(lost.wait(), HEARTBEAT)
        except asyncio.TimeoutError:
            return
        self._lose("the database session was lost")

    async def _beat(self) -> None:
        sent = self._now()
        forget = [key[1] for key, since in self._free_since.items()
                  if key[0] == "i" and sent - since >= TAKEOVER]
        self._beats += 1
        try:
            view = await asyncio.wait_for(
                self.session.heartbeat(forget, sweep=self._beats % SWEEP_EVERY == 0),
                max(0.1, self._last_answer + HOLD - sent))
        except Exception as error:  # noqa: BLE001 - any failure: the session cannot be trusted
            if self._now() >= self._last_answer + HOLD or not self.session.connected:
                self._lose(f"no answer from the database ({type(error).__name__})")
            return
        self._last_answer = sent
        if not view.registered:
            log.error("the other gateways took this one for dead; joining again")
            self._lose("taken for dead")
            return
        if view.unsubscribed:
            self.on_unsubscribed(view.unsubscribed)
        self._watch(view, sent)
        try:
            await self._share(view, sent)
        except Exception as error:  # noqa: BLE001 - a slot taken meanwhile is kept or lost whole
            log.warning("could not move slots (%s)", type(error).__name__)
            if not self.session.connected:
                self._lose("the database session was lost")

    async def _rejoin(self) -> None:
        try:
            kept = await self.store.join_cluster(self.session, list(self.pools))
        except StoreUnavailable as error:
            log.debug("cannot join the cluster yet: %s", error)
            return
        self._last_answer = self._now()
        if not kept:
            self.on_forgotten()
        log.warning("joined the cluster again as instance %d", self.session.id)

    def _lose(self, reason: str) -> None:
        """Drop every CMPP connection now and end the session (its locks go with it)."""
        if any(self.held.values()):
            log.error("dropping every CMPP connection: %s", reason)
        for channel, slots in self.held.items():
            for slot in slots:
                self.pools[channel].revoke(slot)
            if slots:
                slots.clear()
                self.on_lost(channel)
        self.session.drop()

    # ------------------------------------------------------------------------- shares

    def _watch(self, view, now: float) -> None:
        """Note since when each gateway's instance lock, and each slot's lock, is free."""
        seen: dict[tuple, float] = {}
        for n in view.instances - view.alive:
            if n != self.id:
                seen[("i", n)] = self._free_since.get(("i", n), now)
        for (channel, slot), holder in view.holders.items():
            if self.session.key(channel, slot) not in view.held and holder is not None:
                key = (channel, slot, holder)
                seen[key] = self._free_since.get(key, now)
        self._free_since = seen
        self.alive = len(view.alive)
        for channel in self.pools:
            self.cluster[channel] = sum(1 for slot in range(self.pools[channel].channel.connections)
                                        if self.session.key(channel, slot) in view.held)

    async def _share(self, view, now: float) -> None:
        if self.closing:
            return
        alive = sorted(view.alive)
        for channel, pool in self.pools.items():
            if channel in self._releasing:
                continue
            connections = pool.channel.connections
            share, mine = fair_share(connections, alive, self.id), self.held[channel]
            if len(mine) < share:
                await self._take(view, channel, share - len(mine), now)
            elif len(mine) > share and self._someone_short(view, channel, alive, connections):
                self._releasing[channel] = asyncio.get_running_loop().create_task(
                    self._give_up(channel, max(mine)), name=f"give-up-{channel}")

    async def _take(self, view, channel: str, wanted: int, now: float) -> None:
        pool = self.pools[channel]
        for slot in range(pool.channel.connections):
            if wanted <= 0:
                return
            if self.session.key(channel, slot) in view.held:
                continue
            holder = view.holders.get((channel, slot))
            vanished = holder is not None and holder != self.id
            if vanished and now - self._free_since.get((channel, slot, holder), now) < TAKEOVER:
                continue
            if await self.session.take(channel, slot, holder):
                self.held[channel].add(slot)
                pool.grant(slot)
                wanted -= 1
                log.info("%s: holding slot %d%s", channel, slot,
                         f" (instance {holder} vanished)" if vanished else "")

    def _someone_short(self, view, channel: str, alive: list[int], connections: int) -> bool:
        counts = {n: 0 for n in alive}
        for slot in range(connections):
            holder = view.holders.get((channel, slot))
            if holder in counts and self.session.key(channel, slot) in view.held:
                counts[holder] += 1
        return any(counts[n] < fair_share(connections, alive, n) for n in alive)

    async def _give_up(self, channel: str, slot: int) -> None:
        """Release one slot gracefully, then free it for anyone at once."""
        try:
            await self.pools[channel].release(slot)
            self.held[channel].discard(slot)
            if self.session.connected:
                await self.session.give_up(channel, slot)
            log.info("%s: gave slot %d up for another gateway", channel, slot)
            if not self.held[channel]:
                self.on_lost(channel)
        except Exception as error:  # noqa: BLE001 - its lock must not outlive its use
            self._lose(f"could not give slot {slot} of {channel} up ({error})")
        finally:
            self._releasing.pop(channel, None)

    # ------------------------------------------------------------------------- reporting

    def report(self) -> dict:
        """For /readyz: this gateway's id, and per channel the slots it holds and how many
        all gateways hold."""
        return {"instance": self.id, "name": self.session.name,
                "connected": self.session.connected, "gateways": self.alive,
                "slots": {c: sorted(s) for c, s in self.held.items()},
                "cluster_slots": dict(self.cluster),
                "connections": {c: p.channel.connections for c, p in self.pools.items()}}
