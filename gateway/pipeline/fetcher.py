"""A channel's fetcher: what the dispatcher holds ready, read from the store and handed back.

``Fetcher`` is ``ChannelDispatcher``'s base: its methods work on the state the dispatcher's
``__init__`` sets up (the ready queues, the read cursors, the in-flight set, the claims to hand
back), and call the dispatcher's ``_pump`` (to send what was read), ``_record`` and ``_failed``
(for a message that cannot be split, or a taken-over part). ``_Work`` is a message being
submitted, as the fetcher prepares it for the pump.

One fetcher task per channel reads accepted messages, the most urgent first (then oldest
first) and in pages, into bounded queues of ready work, one per priority, split into segments.
Urgent messages (verification codes, messages marked urgent) never wait behind the ones held
in memory: the API's acceptance of one wakes the fetcher (``notify``), which reads the urgent
messages alone at once, even when the queues are full of others (the store answers such a
fetch ahead of other work), and the pump takes them first. The store is read from where the
last read of each priority ended; an urgent message that had to wait (Result 8, a lost
connection) is read again as soon as it is due, rather than after the others' backlog.

With several gateways on one store (the pool is shared), the store claims what it fetches for
this gateway, and the fetcher reads only while this gateway holds a slot of the channel, at
most a second of its share of the TPS ahead (``backlog``): what it holds is in doubt if this
gateway is killed. An urgent read that finds the queues full hands back the least urgent
messages held, the last fetched first, to stay within that bound (``_trim``). A message taken
over from a gateway that died (``PendingMessage.taken_over``) may have had its first
unrecorded part sent: under ``on_connection_lost = "report"`` that part ends ``unknown``
(temporary) and the message goes on with its next part, so nothing is sent twice; under
"resend" it is sent again. Messages fetched and not sent are handed back (``let_go``) when the
gateway holds no slot any more or drains, and forgotten (``forget``) when the others took it
for dead. A read that fails (the store cannot answer: ``StoreUnavailable``) is made again after
``poll`` seconds (an urgent read still owed). It may have claimed messages all the same, when
the database took its COMMIT and the answer was lost: no gateway could take those, this one
included, so before its next read it hands back every message it claims and does not hold.
Claims it could not hand back are tried again at the next read.
"""

from __future__ import annotations

import asyncio
import logging

import cmpp
from gateway.status import DeliveryStatus
from gateway.store import PRIORITIES, URGENT, PendingMessage, StoreUnavailable

log = logging.getLogger("cmpp_gateway.dispatcher")


class _Work:
    """A message being submitted: its segments, the next to send, and that one's SUBMIT."""

    __slots__ = ("row", "segments", "next", "pdu")

    def __init__(self, row: PendingMessage, segments: list[cmpp.Segment]) -> None:
        self.row, self.segments = row, segments
        self.next = 0                    # index of the segment to send next
        self.pdu: cmpp.Submit | None = None   # its SUBMIT, once built
        self.skip_done()

    def skip_done(self) -> None:
        """Move past the parts whose SUBMIT_RESP was recorded before a restart."""
        while self.next < len(self.segments) and self.next + 1 in self.row.done_parts:
            self.next += 1
        self.pdu = None

    @property
    def finished(self) -> bool:
        return self.next >= len(self.segments)


class Fetcher:
    """Reads a channel's accepted messages into the ready queues and hands back what it holds
    (a base of ``ChannelDispatcher``, whose ``__init__`` sets up the state it uses)."""

    def forget(self) -> list[int]:
        """Drop the messages fetched and not sent (their outcomes in flight are still
        recorded); returns their ids. The next read starts again from the first id, where they
        are."""
        ids = [work.row.id for ready in self._ready for work in ready]
        for message_id in ids:
            self._in_flight.discard(message_id)
        for ready in self._ready:
            ready.clear()
        self._after = dict.fromkeys(PRIORITIES, 0)
        self._room.set()
        return ids

    def let_go(self) -> None:
        """Hand the messages fetched and not sent back to the store (this gateway holds no
        slot of the channel now, or stops): another gateway may claim them."""
        self._release.extend(self.forget())
        self._wakeup.set()

    async def _stop_fetching(self) -> None:
        if self._fetcher is not None:
            self._fetcher.cancel()
            await asyncio.gather(self._fetcher, return_exceptions=True)
            self._fetcher = None

    # ------------------------------------------------------------------------- fetching

    async def _fetch(self) -> None:
        while True:
            if self._claims_owed:
                await self._hand_back()
            urgent_only = await self._until_room()
            if self._claims_owed:                 # let go meanwhile: hand them back first
                continue
            if self.pool.shared and not self.pool.granted:
                self._wakeup.clear()
                await self._idle()
                continue
            after = self._next_read(urgent_only)
            self._urgent = False
            if not urgent_only:
                self._wakeup.clear()              # a notify from now on is for the next read
            try:
                rows = await self.store.fetch_pending(self.channel.name, after,
                                                      self._page(urgent_only), self.clock())
            except Exception as error:  # noqa: BLE001 - the fetcher outlives any failure
                self._fetch_failed(error, urgent_only)
                await asyncio.sleep(self.poll)
                continue
            for row in rows:                      # by priority, then id: each its last
                self._after[row.priority] = row.id
            if not rows:
                if not urgent_only:               # at the end: rescan from the start later
                    self._after = dict.fromkeys(PRIORITIES, 0)
                    await self._idle()
                continue
            for row in rows:
                if row.id not in self._in_flight:
                    self._in_flight.add(row.id)
                    self._prepare(row)
            if self.pool.shared:
                self._trim()
            self._pump()

    def _fetch_failed(self, error: Exception, urgent_only: bool) -> None:
        """A read that failed is made again after ``poll`` seconds (an urgent one still owed).
        It may have claimed messages all the same (its COMMIT taken, the answer lost): before
        the next read, all this gateway claims and does not hold is handed back (a store that
        claims nothing does nothing then)."""
        if not isinstance(error, StoreUnavailable):   # that one the store says itself
            log.error("%s: could not read the messages to send (%s: %s); trying again in %g s",
                      self.channel.name, type(error).__name__, error, self.poll)
        self._urgent = self._urgent or urgent_only
        self._claims_in_doubt = True

    async def _until_room(self) -> bool:
        """Wait until there is something to read and room for it. True: read the urgent
        messages alone (some came, and their queue has room, however full the others are)."""
        while True:
            if self._urgent and len(self._ready[URGENT]) < self.backlog:
                return True
            if self._queued() < self.backlog:
                return False
            self._room.clear()
            await self._room.wait()

    def _next_read(self, urgent_only: bool) -> dict[int, int]:
        """Where the next read starts, by priority: where the last one ended, or before an
        urgent message due again (``_rewind``: applied here, after the cursors moved on with
        a read that was under way when it fell due)."""
        if self._rewind is not None:
            self._after[URGENT] = min(self._after[URGENT], self._rewind)
            self._rewind = None
        return {URGENT: self._after[URGENT]} if urgent_only else dict(self._after)

    def _page(self, urgent_only: bool) -> int:
        """How many to read: a page; a shared pool's, what its backlog has room for (the
        urgent queue's room for an urgent read: ``_trim`` hands back others to make it)."""
        if not self.pool.shared:
            return self.page
        held = len(self._ready[URGENT]) if urgent_only else self._queued()
        return max(1, self.backlog - held)

    def _trim(self) -> None:
        """A shared pool's messages held stay within its backlog: past it (an urgent read
        when the queues were full), the least urgent held go back to the store, the last
        fetched first, for any gateway to claim; this one reads them again from where they
        were."""
        excess = self._queued() - self.backlog
        for priority in reversed(PRIORITIES):
            ready = self._ready[priority]
            while excess > 0 and ready and priority != URGENT:
                message_id = ready.pop().row.id
                self._in_flight.discard(message_id)
                self._release.append(message_id)
                self._after[priority] = min(self._after[priority], message_id - 1)
                excess -= 1

    def _queued(self) -> int:
        return sum(map(len, self._ready))

    async def _idle(self) -> None:
        """Wait for news (messages accepted, claims to hand back) or the next poll."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), self.poll)
        except asyncio.TimeoutError:
            pass

    @property
    def _claims_owed(self) -> bool:
        """Claims to hand back: messages let go, or all not held after a failed read."""
        return bool(self._release) or self._claims_in_doubt

    async def _hand_back(self) -> None:
        """Hand back the claims let go, or after a failed read all claims not held."""
        ids, self._release = self._release, []
        in_doubt, self._claims_in_doubt = self._claims_in_doubt, False
        try:
            await self._release_claims(ids, in_doubt)
        except Exception as error:  # noqa: BLE001 - tried again at the next fetch
            log.warning("%s: could not hand back %s yet: %s", self.channel.name,
                        "the messages claimed and not held" if in_doubt else
                        f"{len(ids)} message(s)", error)
            self._release.extend(ids)
            self._claims_in_doubt = self._claims_in_doubt or in_doubt
            await asyncio.sleep(self.poll)

    async def _release_claims(self, ids: list[int], in_doubt: bool) -> None:
        """Hand back the claims on ``ids``; ``in_doubt``: on all this gateway does not hold."""
        if in_doubt:
            await self.store.release_claims_not_held(self.channel.name, list(self._in_flight))
        else:
            await self.store.release_claims(ids)

    def _prepare(self, row: PendingMessage) -> None:
        try:
            segments = cmpp.split_text(row.text, reference=row.reference,
                                       max_parts=self.channel.max_parts,
                                       reserve_first=self._reserve)
        except ValueError as error:
            self._record(row, [self._failed(row, 1, 1, DeliveryStatus.FAILED, str(error))],
                         finished=True, sent=0)
            return
        work = _Work(row, segments)
        if work.finished:                 # every part answered before a restart
            self._in_flight.discard(row.id)
            return
        if row.taken_over and not self._take_over(work):
            return
        if row.attempts:                  # it waited after an earlier try: sent again now
            self.metrics.resend("deferred")
        self._ready[row.priority].append(work)

    def _take_over(self, work: _Work) -> bool:
        """A message whose gateway died: its next part may have been sent. Under "report" that
        part ends unknown (False when nothing is left to send); under "resend" it goes again."""
        if self.channel.on_connection_lost == "resend":
            self.metrics.resend("connection_lost")
            return True
        row, number, parts = work.row, work.next + 1, len(work.segments)
        result = self._failed(row, number, parts, DeliveryStatus.UNKNOWN, "outcome unknown",
                              temporary=True, reason="taken over from a gateway that stopped")
        work.next += 1
        work.skip_done()
        self._record(row, [result], finished=work.finished, sent=0)
        return not work.finished
