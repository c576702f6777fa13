"""From the store to the SMS center: split, submit, record every segment's Msg_Id.

One fetcher per channel reads accepted messages from the store, in id order and in pages, into
a bounded queue; workers take them, split them into segments (UCS2: 67 characters a part with
the message's own 8-bit UDH reference; room kept for a signature the SMS center adds), ask a
status report for every segment, and submit them through the channel's pool. Each outcome goes
to the store (group-committed, not waited for on the hot path):

* Result 0: the segment's Msg_Id, so that its report can find it;
* a definitive Result: the segment is rejected, final;
* Result 8 beyond the pool's resend cap: the message waits and is tried again later;
* outcome unknown (the connection died and the pool's policy is "report"): final ``unknown``.

Nothing is held in memory but the queue: after a restart the store still says which messages
have no SUBMIT_RESP recorded, and only those segments are submitted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import cmpp

from .config import ChannelConfig
from .errors import OutcomeUnknown, SubmitRejectedError, SubmitThrottledError
from .metrics import ChannelMetrics
from .pool import ChannelPool, DeadlineExceeded, PoolClosed
from .status import DeliveryStatus
from .store import PendingMessage, SegmentResult, Store

log = logging.getLogger("cmpp_gateway.dispatcher")


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
        self.workers = max(8, channel.connections * channel.window)
        self._queue: asyncio.Queue[PendingMessage] = asyncio.Queue(maxsize=self.workers * 2)
        self._in_flight: set[int] = set()
        self._outcomes: list[tuple[PendingMessage, list[SegmentResult]]] = []   # this iteration's
        self._busy = 0                    # workers inside _dispatch
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._reserve = len(cmpp.encode_text(channel.center_signature, 8)[1]) \
            if channel.center_signature else 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        name = self.channel.name
        self._tasks = [loop.create_task(self._fetch(), name=f"fetch-{name}")]
        self._tasks += [loop.create_task(self._work(), name=f"submit-{name}-{i}")
                        for i in range(self.workers)]

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
        if self._tasks:
            self._tasks[0].cancel()                      # the fetcher
        while not self._queue.empty():
            self._in_flight.discard(self._queue.get_nowait().id)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (self._busy or self._in_flight) and loop.time() < end:
            await asyncio.sleep(0.01)
        await self.close()

    async def close(self) -> None:
        """Stop fetching and submitting now; what is not done stays accepted in the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # ------------------------------------------------------------------------- fetching

    async def _fetch(self) -> None:
        after = 0
        while True:
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
                    await self._queue.put(row)

    # ------------------------------------------------------------------------- submitting

    async def _work(self) -> None:
        while True:
            row = await self._queue.get()
            self._busy += 1
            try:
                await self._dispatch(row)
            except asyncio.CancelledError:
                self._in_flight.discard(row.id)
                raise
            except Exception:  # noqa: BLE001 - one message's bug must not stop the channel
                log.exception("%s: message %d could not be dispatched; retrying later",
                              self.channel.name, row.id)
                self._retry_later(row)
            finally:
                self._busy -= 1

    async def _dispatch(self, row: PendingMessage) -> None:
        try:
            segments = cmpp.split_text(row.text, reference=row.reference,
                                       max_parts=self.channel.max_parts,
                                       reserve_first=self._reserve)
        except ValueError as error:
            self._record(row, [self._failed(row, 1, 1, DeliveryStatus.FAILED, str(error))])
            return
        parts = len(segments)
        results = []
        for number, segment in enumerate(segments, 1):
            if number in row.done_parts:
                continue
            result = await self._submit(row, segment, number, parts)
            if result is None:                # try the message again later
                self._record(row, results, retry=True)
                return
            results.append(result)
        self._record(row, results)

    async def _submit(self, row: PendingMessage, segment: cmpp.Segment, number: int,
                      parts: int) -> SegmentResult | None:
        c = self.channel
        submit = cmpp.Submit(registered_delivery=1, service_id=c.service_id, msg_src=c.msg_src,
                             src_id=c.access_number, dest_terminal_ids=(row.recipient,),
                             msg_fmt=segment.msg_fmt, tp_udhi=segment.tp_udhi,
                             pk_total=segment.pk_total, pk_number=segment.pk_number,
                             msg_content=segment.msg_content)
        try:
            done = await self.pool.submit(submit)
        except SubmitRejectedError as error:
            log.info("%s: message %d part %d refused by the ISMG: Result %d", c.name, row.id,
                     number, error.result)
            return self._failed(row, number, parts, DeliveryStatus.REJECTED,
                                f"Result {error.result}", error.result)
        except OutcomeUnknown as error:
            return self._failed(row, number, parts, DeliveryStatus.UNKNOWN, "outcome unknown",
                                temporary=True, reason=error.reason)
        except (SubmitThrottledError, DeadlineExceeded, PoolClosed):
            return None
        self.metrics.lost_resends(done.lost)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: message %d part %d/%d submitted on %s: Msg_Id %d, %d send(s)",
                      c.name, row.id, number, parts, done.connection, done.response.msg_id,
                      done.sends)
        return SegmentResult(row.id, c.name, number, parts, 0, done.response.msg_id,
                             connection=done.connection, sends=done.sends, at=self.clock())

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

    def _retry_later(self, row: PendingMessage) -> None:
        self._record(row, [], retry=True)


def _outcomes_of(future: asyncio.Future):
    """What a store operation came to: its result, or the exception it failed with."""
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()
