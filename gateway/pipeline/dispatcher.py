"""From the store to the SMS center: split, submit, record every segment's Msg_Id.

One fetcher per channel reads accepted messages from the store, in id order and in pages, into
a bounded queue of ready work, split into segments (UCS2: 67 characters a part with the
message's own 8-bit UDH reference; room kept for a signature the SMS center adds). The queue is
pumped into the channel's pool without a task per message: whenever the pool has window (a
SUBMIT_RESP freed it, a connection opened, the TPS budget allows), the next segments go out at
once, inside the read that freed the window. Every segment asks for a status report; a
message's parts go one after another. Each outcome goes to the store (group-committed, not
waited for on the hot path):

* Result 0: the segment's Msg_Id, so that its report can find it;
* a definitive Result: the segment is rejected, final;
* Result 8 beyond the pool's resend cap: the message waits and is tried again later;
* outcome unknown (the connection died and the pool's policy is "report"): final ``unknown``;
* a message that cannot be split or encoded: ``failed``, final.

Nothing is held in memory but the queue: after a restart the store still says which messages
have no SUBMIT_RESP recorded, and only those segments are submitted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import cmpp
from gateway.channel import (
    ChannelPool,
    DeadlineExceeded,
    OutcomeUnknown,
    PoolClosed,
    SubmitRejectedError,
    Submitted,
    SubmitThrottledError,
)
from gateway.config import ChannelConfig
from gateway.ops import ChannelMetrics
from gateway.status import DeliveryStatus
from gateway.store import PendingMessage, SegmentResult, Store

log = logging.getLogger("cmpp_gateway.dispatcher")


class _Work:
    """A message being submitted: its segments and the outcomes so far."""

    __slots__ = ("row", "segments", "next", "results", "pdu")

    def __init__(self, row: PendingMessage, segments: list[cmpp.Segment]) -> None:
        self.row, self.segments, self.results = row, segments, []
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


class ChannelDispatcher:
    """Feeds one channel's pool from the store."""

    def __init__(self, channel: ChannelConfig, pool: ChannelPool, store: Store,
                 metrics: ChannelMetrics, *, page: int = 500, poll: float = 1.0,
                 retry_delay: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.page = page
        self.poll = poll
        self.retry_delay = retry_delay
        self.clock = clock
        # The next page is fetched while the last one is still being sent: the store's answer
        # takes a commit or two, and the window must not run dry meanwhile.
        self.backlog = max(page, 4 * channel.connections * channel.window)
        self._ready: deque[_Work] = deque()          # fetched, waiting for a window
        self._room = asyncio.Event()                 # the fetcher may add to _ready
        self._in_flight: set[int] = set()            # fetched, outcome not yet committed
        self._outcomes: list[tuple[PendingMessage, list[SegmentResult]]] = []   # this iteration's
        self._wakeup = asyncio.Event()
        self._fetcher: asyncio.Task | None = None
        self._pumping = False
        self._stopped = False
        self._reserve = len(cmpp.encode_text(channel.center_signature, 8)[1]) \
            if channel.center_signature else 0

    def start(self) -> None:
        self._stopped = False
        self.pool.on_window_free = self._pump
        self._fetcher = asyncio.get_running_loop().create_task(
            self._fetch(), name=f"fetch-{self.channel.name}")

    def notify(self) -> None:
        """New messages were accepted for this channel: look now rather than at the next poll."""
        self._wakeup.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def drain(self, timeout: float) -> None:
        """Stop taking messages; let the ones being submitted finish and their outcomes be
        committed (at most ``timeout`` seconds), then stop. Messages not started stay accepted
        in the store; a submit cut off by the timeout may be sent again after a restart."""
        await self._stop_fetching()
        for work in self._ready:
            self._in_flight.discard(work.row.id)
        self._ready.clear()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._in_flight and loop.time() < end:
            await asyncio.sleep(0.01)
        await self.close()

    async def close(self) -> None:
        """Stop fetching and submitting now; what is not done stays accepted in the store."""
        self._stopped = True
        if self.pool.on_window_free == self._pump:
            self.pool.on_window_free = None
        self._ready.clear()
        await self._stop_fetching()

    async def _stop_fetching(self) -> None:
        if self._fetcher is not None:
            self._fetcher.cancel()
            await asyncio.gather(self._fetcher, return_exceptions=True)
            self._fetcher = None

    # ------------------------------------------------------------------------- fetching

    async def _fetch(self) -> None:
        after = 0
        while True:
            while len(self._ready) >= self.backlog:
                self._room.clear()
                await self._room.wait()
            rows = await self.store.fetch_pending(self.channel.name, after, self.page, self.clock())
            if not rows:
                after = 0                     # at the end: rescan from the start later
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.poll)
                except asyncio.TimeoutError:
                    pass
                continue
            after = rows[-1].id
            for row in rows:
                if row.id not in self._in_flight:
                    self._in_flight.add(row.id)
                    self._prepare(row)
            self._pump()

    def _prepare(self, row: PendingMessage) -> None:
        try:
            segments = cmpp.split_text(row.text, reference=row.reference,
                                       max_parts=self.channel.max_parts,
                                       reserve_first=self._reserve)
        except ValueError as error:
            self._record(row, [self._failed(row, 1, 1, DeliveryStatus.FAILED, str(error))])
            return
        work = _Work(row, segments)
        if work.finished:                 # every part answered before a restart
            self._record(row, [])
        else:
            self._ready.append(work)

    # ------------------------------------------------------------------------- submitting

    def _pump(self) -> None:
        """Send ready segments while the pool takes them. Called by the fetcher, by the pool
        when a window frees, and when a message's part is answered and the next one is due."""
        if self._pumping or self._stopped:
            return
        self._pumping = True
        ready = self._ready
        try:
            while ready:
                work = ready[0]
                try:
                    if work.pdu is None:              # built once, however often it waits
                        work.pdu = self._submit_pdu(work)
                    sent = self.pool.submit_now(work.pdu, lambda outcome, work=work:
                                                self._answered(work, outcome))
                except ValueError as error:          # a field that does not fit
                    ready.popleft()
                    self._answered(work, error)
                    continue
                if not sent:
                    break
                ready.popleft()
        finally:
            self._pumping = False
        if len(ready) < self.backlog:
            self._room.set()

    def _submit_pdu(self, work: _Work) -> cmpp.Submit:
        c, segment = self.channel, work.segments[work.next]
        return cmpp.Submit(registered_delivery=1, service_id=c.service_id, msg_src=c.msg_src,
                           src_id=c.access_number, dest_terminal_ids=(work.row.recipient,),
                           msg_fmt=segment.msg_fmt, tp_udhi=segment.tp_udhi,
                           pk_total=segment.pk_total, pk_number=segment.pk_number,
                           msg_content=segment.msg_content)

    def _answered(self, work: _Work, outcome: Submitted | Exception) -> None:
        """One segment's outcome: on to the next part, or the message's outcomes to the store."""
        if self._stopped:
            return                 # not recorded: the message is sent again after a restart
        row, number, parts = work.row, work.next + 1, len(work.segments)
        result = self._segment_result(row, number, parts, outcome)
        if result is None:                        # try the whole message again later
            self._record(row, work.results, retry=True)
            return
        work.results.append(result)
        work.next += 1
        work.skip_done()
        if work.finished:
            self._record(row, work.results)
        else:
            self._ready.appendleft(work)          # its next part goes first
            self._pump()

    def _segment_result(self, row: PendingMessage, number: int, parts: int,
                        outcome: Submitted | Exception) -> SegmentResult | None:
        c = self.channel
        if isinstance(outcome, Submitted):
            self.metrics.lost_resends(outcome.lost)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: message %d part %d/%d submitted on %s: Msg_Id %d, %d send(s)",
                          c.name, row.id, number, parts, outcome.connection,
                          outcome.response.msg_id, outcome.sends)
            return SegmentResult(row.id, c.name, number, parts, 0, outcome.response.msg_id,
                                 connection=outcome.connection, sends=outcome.sends,
                                 at=self.clock())
        if isinstance(outcome, SubmitRejectedError):
            log.info("%s: message %d part %d refused by the ISMG: Result %d", c.name, row.id,
                     number, outcome.result)
            return self._failed(row, number, parts, DeliveryStatus.REJECTED,
                                f"Result {outcome.result}", outcome.result)
        if isinstance(outcome, OutcomeUnknown):
            return self._failed(row, number, parts, DeliveryStatus.UNKNOWN, "outcome unknown",
                                temporary=True, reason=outcome.reason)
        if isinstance(outcome, ValueError):
            log.warning("%s: message %d part %d cannot be sent: %s", c.name, row.id, number,
                        outcome)
            return self._failed(row, number, parts, DeliveryStatus.FAILED, str(outcome))
        if not isinstance(outcome, (SubmitThrottledError, DeadlineExceeded, PoolClosed)):
            log.error("%s: message %d part %d: unexpected %r; retrying later", c.name, row.id,
                      number, outcome)
        return None

    def _failed(self, row: PendingMessage, part: int, parts: int, status: DeliveryStatus,
                stat: str, result: int = -1, temporary: bool = False,
                reason: str | None = None) -> SegmentResult:
        if reason:
            log.warning("%s: message %d part %d: %s (%s)", self.channel.name, row.id, part,
                        stat, reason)
        return SegmentResult(row.id, self.channel.name, part, parts, result, status=status,
                             at=self.clock(), stat=stat, temporary=temporary)

    def _record(self, row: PendingMessage, results: list[SegmentResult],
                retry: bool = False) -> None:
        """Write the outcomes (not waited for); the message leaves the in-flight set only once
        they are committed, so that a rescan cannot pick it up twice. The outcomes of every
        message finished in one loop iteration go to the store as one operation."""
        if retry:
            pending = [self.store.defer(row.id, self.clock() + self.retry_delay)]
            if results:
                pending.append(self.store.record_submits(results, self.channel.provider))
            done = asyncio.gather(*pending, return_exceptions=True)
            done.add_done_callback(lambda f: self._recorded(_outcomes_of(f), [row]))
        elif results:
            if not self._outcomes:
                asyncio.get_running_loop().call_soon(self._store_outcomes)
            self._outcomes.append((row, results))
        else:
            self._in_flight.discard(row.id)

    def _store_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        future = self.store.record_submits([r for _, results in outcomes for r in results],
                                           self.channel.provider)
        future.add_done_callback(lambda f: self._recorded(
            [_outcomes_of(f)], [row for row, _ in outcomes]))

    def _recorded(self, outcomes: list, rows: list[PendingMessage]) -> None:
        for row in rows:
            self._in_flight.discard(row.id)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.error("%s: outcome of message(s) %s not stored (%s); they will be sent "
                          "again", self.channel.name, ", ".join(str(r.id) for r in rows[:10]),
                          outcome)
            elif isinstance(outcome, list):                  # messages that became final
                for status in outcome:
                    if status is not None:
                        self.metrics.final(status.value)



def _outcomes_of(future: asyncio.Future):
    """What a store operation came to: its result, or the exception it failed with."""
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()
