"""From the store to the SMS center: split, submit, record every segment's Msg_Id.

A channel's fetcher (``gateway.pipeline.fetcher``: ``Fetcher``, this dispatcher's base) reads
accepted messages from the store, the most urgent first, into bounded queues of ready work, one
per priority, split into segments (UCS2: 67 characters a part with the message's own 8-bit UDH
reference; room kept for a signature the SMS center adds). The queues are pumped into the
channel's pool without a task per message: whenever the pool has window (a SUBMIT_RESP freed
it, a connection opened, the TPS budget allows), the next segments go out at once, inside the
read that freed the window, urgent ones before notifications and notifications before
marketing. Every segment asks for a status report and carries its priority's ``Msg_level``
(MSG_LEVELS); a message's parts go one after another. Each segment's outcome goes to the store
as it comes (group-committed, not waited for on the hot path):

* Result 0: the segment's Msg_Id, so that its report can find it;
* a definitive Result: the segment is rejected, final;
* Result 8 beyond the pool's resend cap, or (policy "resend") connections lost under it
  beyond the pool's cap: the message waits ``retry_delay`` and is tried again, until the
  channel's ``retry_for`` after its acceptance has passed; then it ends ``failed`` (Result 8)
  or ``unknown``, temporary;
* outcome unknown (policy "report" and the connection died, or N sends unanswered): final
  ``unknown``, temporary;
* a message that cannot be split or encoded: ``failed``, final.

At most ``max_unsettled`` segments are sent and not yet settled, that is, without their
outcome committed: this bounds what a crash can send twice (each of them once more, after the
restart). The default, 2 x connections x window, leaves room for the windows to stay full
while as many outcomes wait for the store's group commit: commits then never starve the
windows, and the bound does not cost throughput. Nothing is held in memory but the queues:
after a restart the store still says which messages have no SUBMIT_RESP recorded, and only
those segments are submitted again.

Urgent messages never wait behind the ones held in memory, and with several gateways on one
store each holds only what it claimed, at most a second of its share of the TPS
(``max_unsettled`` without a TPS): the fetcher's module says how.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable

import cmpp
from gateway.channel import (
    ChannelPool,
    DeadlineExceeded,
    OutcomeUnknown,
    PoolClosed,
    SendsExhausted,
    SubmitRejectedError,
    Submitted,
    SubmitThrottledError,
)
from gateway.config import ChannelConfig
from gateway.ops import ChannelMetrics
from gateway.status import DeliveryStatus
from gateway.store import (
    MARKETING,
    NOTIFICATION,
    PRIORITIES,
    PRIORITY_NAMES,
    URGENT,
    PendingMessage,
    SegmentResult,
    Store,
)

from .fetcher import Fetcher, _Work

log = logging.getLogger("cmpp_gateway.dispatcher")

THROTTLE_WARNING_INTERVAL = 60.0      # seconds between two warnings about Result 8 deferrals
# SUBMIT's Msg_level by priority. The spec gives no range; centers take 0-9 and treat the
# higher as the more urgent, where they use it at all.
MSG_LEVELS = {URGENT: 9, NOTIFICATION: 1, MARKETING: 0}
_SUBMITTED = DeliveryStatus.SUBMITTED     # a segment's status once its Msg_Id is known


class ChannelDispatcher(Fetcher):
    """Feeds one channel's pool from the store (what it reads and hands back: ``Fetcher``)."""

    def __init__(self, channel: ChannelConfig, pool: ChannelPool, store: Store,
                 metrics: ChannelMetrics, *, page: int = 500, poll: float = 1.0,
                 retry_delay: float = 30.0, clock: Callable[[], float] = time.time,
                 max_unsettled: int | None = None) -> None:
        self.channel = channel
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.page = page
        self.poll = poll
        self.retry_delay = retry_delay
        self.clock = clock
        self.max_unsettled = max_unsettled or 2 * channel.connections * channel.window
        # The next page is fetched while the last one is still being sent: the store's answer
        # takes a commit or two, and the window must not run dry meanwhile.
        self._backlog = max(page, 4 * channel.connections * channel.window)
        # Fetched, waiting for a window: a queue per priority, the most urgent first.
        self._ready: tuple[deque[_Work], ...] = tuple(deque() for _ in PRIORITIES)
        self._after = dict.fromkeys(PRIORITIES, 0)   # the last id read, by priority
        self._urgent = False                         # urgent messages came since the last read
        self._timers: set[asyncio.TimerHandle] = set()   # urgent messages due again
        self._rewind: int | None = None              # read the urgent from after this id
        self._release: list[int] = []                # claims to hand back
        self._claims_in_doubt = False                # a failed read may have claimed some
        self._room = asyncio.Event()                 # the fetcher may add to _ready
        self._in_flight: set[int] = set()            # fetched, outcome not yet committed
        self._unsettled = 0                          # segments sent, outcome not committed
        self._outcomes: list[tuple[PendingMessage, list[SegmentResult], bool, int]] = []
        self._wakeup = asyncio.Event()
        self._fetcher: asyncio.Task | None = None
        self._pumping = False
        self._stopped = False
        self._throttled = 0                          # Result 8 deferrals not yet warned of
        self._throttle_warned_at: float | None = None
        self._reserve = channel.signature_room
        # Every SUBMIT of the channel shares its fields but the message's own: packed once.
        self._template = cmpp.SubmitTemplate(cmpp.Submit(
            registered_delivery=1, service_id=channel.service_id, msg_src=channel.msg_src,
            src_id=channel.access_number))

    def start(self) -> None:
        self._stopped = False
        self.pool.on_window_free = self._pump
        self._fetcher = asyncio.get_running_loop().create_task(
            self._fetch(), name=f"fetch-{self.channel.name}")

    def notify(self, priority: int = NOTIFICATION) -> None:
        """New messages were accepted for this channel, the most urgent of ``priority``: look
        now rather than at the next poll; for urgent ones, even when the queues are full."""
        if priority == URGENT:
            self._urgent = True
            self._room.set()
        self._wakeup.set()

    @property
    def backlog(self) -> int:
        """How many messages to hold ready. A shared pool's are claimed, and in doubt if this
        gateway dies: a second of its share of the TPS at most, max_unsettled without one."""
        if not self.pool.shared:
            return self._backlog
        rate = self.pool.rate
        return self.max_unsettled if rate is None else \
            max(1, min(self.max_unsettled, math.ceil(rate)))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def unsettled(self) -> int:
        """Segments sent whose outcome is not yet committed (at most ``max_unsettled``)."""
        return self._unsettled

    async def drain(self, timeout: float) -> None:
        """Stop taking messages; let the ones being submitted finish and their outcomes be
        committed (at most ``timeout`` seconds), then stop. Messages not started stay accepted
        in the store; a submit cut off by the timeout may be sent again after a restart."""
        await self._stop_fetching()
        self.let_go()
        if self._claims_owed:
            try:
                await self._release_claims(self._release, self._claims_in_doubt)
            except Exception as error:  # noqa: BLE001 - they are taken over once this one is gone
                log.warning("%s: could not hand back the messages not sent: %s",
                            self.channel.name, error)
            self._release, self._claims_in_doubt = [], False
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
        for ready in self._ready:
            ready.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await self._stop_fetching()

    # ------------------------------------------------------------------------- submitting

    def _pump(self) -> None:
        """Send ready segments, the most urgent first, while the pool takes them and fewer
        than ``max_unsettled`` are unsettled. Called by the fetcher, by the pool when a window
        frees, when outcomes are committed, and when a message's part is answered and the next
        one is due."""
        if self._pumping or self._stopped:
            return
        self._pumping = True
        try:
            while self._unsettled < self.max_unsettled:
                for ready in self._ready:            # the most urgent queue with work
                    if ready:
                        break
                else:
                    break
                work = ready[0]
                try:
                    if work.pdu is None:              # built once, however often it waits
                        work.pdu = self._submit_pdu(work)
                    sent = self.pool.submit_now(work.pdu, lambda outcome, work=work:
                                                self._answered(work, outcome))
                except ValueError as error:          # a field that does not fit
                    ready.popleft()
                    self._unsettled += 1              # settled with its record, as if sent
                    self._answered(work, error)
                    continue
                if not sent:
                    break
                ready.popleft()
                self._unsettled += 1
                self._sent(work)
        finally:
            self._pumping = False
        if self._queued() < self.backlog:
            self._room.set()

    def _sent(self, work: _Work) -> None:
        """A SUBMIT went out: the time from acceptance of a message's first one, first try."""
        row = work.row
        if work.next == 0 and not row.attempts and row.created_at is not None:
            self.metrics.submitted_after(PRIORITY_NAMES[row.priority],
                                         self.clock() - row.created_at)

    def _submit_pdu(self, work: _Work) -> cmpp.Submit:
        segment = work.segments[work.next]
        return self._template.submit((work.row.recipient,), segment.msg_content,
                                     msg_fmt=segment.msg_fmt, tp_udhi=segment.tp_udhi,
                                     pk_total=segment.pk_total, pk_number=segment.pk_number,
                                     msg_level=MSG_LEVELS[work.row.priority])

    def _answered(self, work: _Work, outcome: Submitted | Exception) -> None:
        """One segment's outcome: to the store, then on to the next part."""
        if self._stopped:
            return                 # not recorded: the message is sent again after a restart
        row, number, parts = work.row, work.next + 1, len(work.segments)
        result = self._segment_result(row, number, parts, outcome)
        if result is None:                        # try the whole message again later
            self._retry_later(work, outcome)
            return
        work.next += 1
        work.skip_done()
        self._record(row, [result], finished=work.finished)
        if not work.finished:
            self._ready[row.priority].appendleft(work)    # its next part goes first
            self._pump()

    def _segment_result(self, row: PendingMessage, number: int, parts: int,
                        outcome: Submitted | Exception) -> SegmentResult | None:
        """What the outcome makes of the segment; None: the message waits and goes again."""
        c = self.channel
        if isinstance(outcome, Submitted):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: message %d part %d/%d submitted on %s: Msg_Id %d, %d send(s)",
                          c.name, row.id, number, parts, outcome.connection,
                          outcome.response.msg_id, outcome.sends)
            return SegmentResult(row.id, c.name, number, parts, 0, outcome.response.msg_id,
                                 _SUBMITTED, outcome.connection, outcome.sends, self.clock())
        if isinstance(outcome, SubmitRejectedError):
            log.info("%s: message %d part %d refused by the ISMG: Result %d", c.name, row.id,
                     number, outcome.result)
            return self._failed(row, number, parts, DeliveryStatus.REJECTED,
                                f"Result {outcome.result}", outcome.result)
        if isinstance(outcome, OutcomeUnknown):
            if c.on_connection_lost == "resend" and not isinstance(outcome, SendsExhausted):
                return None            # its sends may all have been lost: it goes again
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

    # ------------------------------------------------------------------------- retrying

    def _retry_later(self, work: _Work, outcome: Exception) -> None:
        """The message waits ``retry_delay`` and goes again (its parts answered so far are
        recorded); or, ``retry_for`` after its acceptance, it ends."""
        row, reason = work.row, _defer_reason(outcome)
        if row.created_at is not None and self.clock() >= row.created_at + self.channel.retry_for:
            self._give_up(work, outcome)
            return
        self.metrics.deferred(reason)
        if reason == "flow_control":
            self._warn_throttled()
        future = self.store.defer(row.id, self.clock() + self.retry_delay)
        future.add_done_callback(lambda f: self._settled(1, [row], [row], [_outcomes_of(f)]))
        if row.priority == URGENT:
            future.add_done_callback(lambda f: self._read_again_later(row))

    def _read_again_later(self, row: PendingMessage) -> None:
        """Once the urgent message ``row`` is due again, read the urgent ones from it on."""
        if self._stopped:
            return

        def due() -> None:
            self._timers.discard(timer)
            self._rewind = row.id - 1 if self._rewind is None else min(self._rewind, row.id - 1)
            self.notify(URGENT)
        timer = asyncio.get_running_loop().call_later(self.retry_delay, due)
        self._timers.add(timer)

    def _give_up(self, work: _Work, outcome: Exception) -> None:
        """End a message the center would not take within ``retry_for``: ``failed`` after
        Result 8, ``unknown`` after lost connections (the center may have it), temporary."""
        row, first, parts = work.row, work.next + 1, len(work.segments)
        if isinstance(outcome, OutcomeUnknown):
            status, stat = DeliveryStatus.UNKNOWN, "outcome unknown"
        elif isinstance(outcome, SubmitThrottledError):
            status, stat = DeliveryStatus.FAILED, "Result 8"
        else:
            status, stat = DeliveryStatus.FAILED, "not submitted"
        log.warning("%s: message %d not taken by the center within retry_for (%g s) of its "
                    "acceptance: %s (last: %s)", self.channel.name, row.id,
                    self.channel.retry_for, status.value, outcome)
        results = [self._failed(row, part, parts, status, stat, temporary=True)
                   for part in range(first, parts + 1) if part not in row.done_parts]
        work.next = parts
        self._record(row, results, finished=True)

    def _warn_throttled(self) -> None:
        """Warn of messages deferred after Result 8: at once, then at most once a minute."""
        self._throttled += 1
        now = asyncio.get_running_loop().time()
        if self._throttle_warned_at is not None and \
                now < self._throttle_warned_at + THROTTLE_WARNING_INTERVAL:
            return
        log.warning("%s: %d message(s) refused with Result 8 (flow control) %d times in a row; "
                    "each is tried again in %g s, and ends failed %g s after its acceptance",
                    self.channel.name, self._throttled, self.pool.tuning.max_throttled_sends + 1,
                    self.retry_delay, self.channel.retry_for)
        self._throttled, self._throttle_warned_at = 0, now

    # ------------------------------------------------------------------------- recording

    def _record(self, row: PendingMessage, results: list[SegmentResult], finished: bool,
                sent: int = 1) -> None:
        """Queue outcomes for the store (not waited for). The outcomes of one loop iteration
        go as one operation; once it is committed, ``sent`` segments are settled, and a
        ``finished`` message leaves the in-flight set (so a rescan cannot pick it up twice)."""
        if not self._outcomes:
            asyncio.get_running_loop().call_soon(self._store_outcomes)
        self._outcomes.append((row, results, finished, sent))

    def _store_outcomes(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        results = [(row, r) for row, results, _, _ in outcomes for r in results]
        sent = sum([sent for _, _, _, sent in outcomes])
        future = self.store.record_submits([r for _, r in results], self.channel.provider)
        future.add_done_callback(lambda f: self._settled(
            sent, [row for row, _, done, _ in outcomes if done],
            [row for row, _, _, _ in outcomes], [_outcomes_of(f)], results))

    def _settled(self, sent: int, finished: list[PendingMessage], rows: list[PendingMessage],
                 outcomes: list, results: list[tuple[PendingMessage, SegmentResult]] = ()
                 ) -> None:
        self._unsettled -= sent
        for row in finished:
            self._in_flight.discard(row.id)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.error("%s: outcome of message(s) %s not stored (%s); they will be sent "
                          "again", self.channel.name, ", ".join(str(r.id) for r in rows[:10]),
                          outcome)
                self._release.extend(r.id for r in finished)
            elif isinstance(outcome, list):                  # messages that became final
                for status, (row, result) in zip(outcome, results):
                    if status is not None:
                        self._final(status, row, result.at)
        self._pump()

    def _final(self, status: DeliveryStatus, row: PendingMessage, at: float) -> None:
        self.metrics.final(status.value)
        if row.created_at is not None:
            self.metrics.final_after(PRIORITY_NAMES[row.priority], at - row.created_at)


def _defer_reason(outcome: Exception) -> str:
    if isinstance(outcome, SubmitThrottledError):
        return "flow_control"
    if isinstance(outcome, OutcomeUnknown):
        return "connection_lost"
    return "other"


def _outcomes_of(future: asyncio.Future):
    """What a store operation came to: its result, or the exception it failed with."""
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()
