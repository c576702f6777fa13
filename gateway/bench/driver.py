"""One process's load in a ``cmpp-gateway bench`` run: the messages, and the windows kept full.

The load goes through the tool's own client (``wire.Client``: the connections logged in by
the codec's session, then SUBMITs as frames encoded once, the gateway pool's window, TPS
pacing and Result 8 backoff and resends): a freed window is refilled inside the read that
freed it, and a SUBMIT costs no task, no future and no PDU object. Message texts are built
once (``VARIANTS`` of each kind, split and encoded); a message then only takes its
destination and Msg_level. What comes back is counted by the ``Recorder`` (``tally``).
"""

from __future__ import annotations

import asyncio
import time

import cmpp
from gateway.channel import LoginFailed, LoginRefused
from gateway.status import provider_tables

from . import report
from .options import TEXTS, Kind, UsageError, schedule
from .tally import Recorder, Tally, Timeline
from .wire import Client, Outgoing

STOP_GRACE = 1.0            # seconds the answers in flight get after Ctrl-C
VARIANTS = 256              # texts of each kind; a long message's UDH reference is its variant
MAX_TEMPLATES = 4096        # messages kept encoded (about 1 KiB a segment)


class Messages:
    """The messages of a run. Message ``number`` (from 1) is the next kind of the mix's
    schedule, to the next destination, with the next of ``VARIANTS`` texts of its kind; they
    repeat every ``cycle`` messages (a multiple of the schedule, at least ``VARIANTS`` and the
    number of destinations). When the cycle is at most ``MAX_TEMPLATES`` messages they are
    all built at the start, encoded (``wire.Outgoing``): a SUBMIT then costs only its
    Sequence_Id. The numbers are global: each worker process sends its own stride of them.
    Raises ValueError (when built) for a field that does not fit."""

    def __init__(self, weights: dict[Kind, int], numbers: list[str], channel,
                 reports: bool) -> None:
        self.kinds = schedule(weights)
        self.numbers = numbers
        period = len(self.kinds)
        self.cycle = period * -(-max(VARIANTS, len(numbers)) // period)
        same = dict(registered_delivery=1 if reports else 0, service_id=channel.service_id,
                    msg_src=channel.msg_src, src_id=channel.access_number)
        self._texts = {text: [self._segments(text, v, same) for v in range(VARIANTS)]
                       for text in {kind.text for kind in weights}}
        self._templates = None
        if self.cycle <= MAX_TEMPLATES:
            self._templates = [self._make(index) for index in range(self.cycle)]
        else:
            for index in range(period):         # fail now, not in the middle of the run
                self._make(index)

    @staticmethod
    def _segments(text: str, variant: int, same: dict) -> list[dict]:
        body = TEXTS[text].format(n=variant, code=variant * 7919 % 1_000_000)
        return [dict(pk_total=s.pk_total, pk_number=s.pk_number, tp_udhi=s.tp_udhi,
                     msg_fmt=s.msg_fmt, msg_content=s.msg_content, **same)
                for s in cmpp.split_text(body, reference=variant)]

    def build(self, number: int) -> list[Outgoing]:
        """The SUBMITs of message ``number`` (a list to read, not to change)."""
        index = (number - 1) % self.cycle
        if self._templates is None:
            return self._make(index)
        return self._templates[index]

    def _make(self, index: int) -> list[Outgoing]:
        kind = self.kinds[index % len(self.kinds)]
        dest = (self.numbers[index % len(self.numbers)],)
        return [Outgoing.of(cmpp.Submit(msg_level=kind.msg_level, dest_terminal_ids=dest,
                                        **fields))
                for fields in self._texts[kind.text][index % VARIANTS]]


class Run:
    """One process's run: the client, the messages it sends, the recorder of what comes back.

    ``count`` messages (None: until ``--duration`` has passed); this process sends message
    numbers ``offset + 1``, ``offset + 1 + stride``, ... of the global sequence. ``begin``
    starts the clock once the connections are in, ``submit_phase`` and ``report_phase`` run,
    and ``close`` ends the connections and the timeline."""

    def __init__(self, args, channel, messages: Messages, *, count: int | None,
                 stride: int = 1, offset: int = 0) -> None:
        self.args, self.channel, self.messages = args, channel, messages
        self.count, self.stride, self.offset = count, stride, offset
        self.loop = asyncio.get_running_loop()
        self.tally = Tally(timeline_latency=bool(args.chart))
        self.recorder = Recorder(self.tally, provider_tables().for_provider(args.provider),
                                 self.loop.time)
        self.client = Client(channel, self.recorder, on_all_lost=self.stop_submitting)
        self.timeline = Timeline(self.tally)
        self.in_flight = 0          # segments taken and not answered yet (resends included)
        self.messages_taken = 0
        self.over = False           # no new message from now on
        self.closed = False         # outcomes from now on are not counted (left unanswered)
        self.finished = asyncio.Event()     # over, and nothing in flight
        self._segments: list[Outgoing] = []         # of the current message
        self._position = 0                          # ... the next one to send
        self._answered = self._single_answered
        self._deadline: asyncio.TimerHandle | None = None
        self._ticker: asyncio.Task | None = None
        self._cpu_start = 0.0

    def begin(self) -> None:
        """The clock starts: every connection is in (or given up on)."""
        self.tally.start = self.loop.time()
        self._cpu_start = time.process_time()
        self._ticker = asyncio.create_task(self.timeline.run())

    async def connect(self, stop: asyncio.Event, target: str) -> str | None:
        """Log the connections in (``log_in``)."""
        return await log_in(self, stop, target)

    async def close(self, *tasks: asyncio.Task | None) -> None:
        """End ``tasks`` (a progress line), the timeline and the connections (TERMINATE,
        ``STOP_GRACE`` for the answers)."""
        self.recorder.closing = True
        ended = [task for task in (*tasks, self._ticker) if task is not None]
        for task in ended:
            task.cancel()
        await asyncio.gather(*ended, return_exceptions=True)
        if self._ticker is not None:
            self.timeline.finish()
        await self.client.close(timeout=STOP_GRACE)

    # Submitting.

    def take(self) -> tuple[Outgoing, object] | None:
        """The next segment to send and the callback of its outcome, or None (the run is over,
        or done with its count)."""
        if self._position == len(self._segments) and not self._next_message():
            return None
        segment = self._segments[self._position]
        self._position += 1
        self.in_flight += 1
        tally = self.tally
        tally.segments_started += 1
        if segment.first:
            tally.messages_started += 1
        return segment, self._answered

    def _next_message(self) -> bool:
        if self.over:
            return False
        if self.count is not None and self.messages_taken >= self.count:
            self.stop_submitting()
            return False
        number = self.messages_taken * self.stride + self.offset + 1
        self.messages_taken += 1
        self._segments, self._position = self.messages.build(number), 0
        self._answered = self._single_answered if len(self._segments) == 1 \
            else _Message(self, len(self._segments)).answered
        return True

    def stop_submitting(self) -> None:
        """No new message from now on (the rest of one already begun still goes)."""
        self.over = True
        if self._position == 0:
            self._segments = []             # a message not begun yet is not sent at all
        self._check_finished()

    def _check_finished(self) -> None:
        if self.over and not self.in_flight and self._position == len(self._segments):
            self.finished.set()

    def _single_answered(self, outcome: Exception | None) -> None:
        """A single-segment message's outcome: None (acknowledged) or why it failed."""
        if self.closed:
            return
        self.in_flight -= 1
        tally = self.tally
        if outcome is None:
            tally.segments_acknowledged += 1
            tally.messages_acknowledged += 1
        else:
            self.failed(outcome)
            tally.messages_failed += 1
        if self.over:
            self._check_finished()

    def failed(self, error: Exception) -> None:
        self.tally.segments_failed += 1
        self.tally.failures[report.failure_name(error)] += 1

    async def submit_phase(self, stop: asyncio.Event) -> None:
        """Submit until ``count`` messages or the duration, or ``stop`` (then the answers in
        flight get ``STOP_GRACE`` seconds)."""
        if self.count is None:
            self._deadline = self.loop.call_at(self.tally.start + (self.args.duration or 30.0),
                                               self.stop_submitting)
        self.client.take = self.take
        waits = [asyncio.create_task(self.finished.wait()), asyncio.create_task(stop.wait())]
        try:
            self.client.fill()
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not self.finished.is_set():
                self.stop_submitting()
                await asyncio.wait(waits[:1], timeout=STOP_GRACE)
        finally:
            self._end(waits)
        await asyncio.gather(*waits, return_exceptions=True)

    def _end(self, waits: list[asyncio.Task]) -> None:
        for task in waits:
            task.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
        self.client.take = None
        self.over = self.closed = True
        self.tally.end = self.loop.time()
        self.tally.cpu_seconds = time.process_time() - self._cpu_start

    async def report_phase(self, stop: asyncio.Event, enough: asyncio.Event | None = None) -> None:
        """Wait (``--report-wait`` at most) for the reports still to come, or for ``stop``, or
        ``enough`` (another process's word that every report arrived somewhere)."""
        if not self.args.reports or stop.is_set() or not self.recorder.awaiting:
            return
        waits = [asyncio.create_task(event.wait())
                 for event in (self.recorder.all_reported, stop, enough) if event is not None]
        await asyncio.wait(waits, timeout=self.args.report_wait,
                           return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    def snapshot(self, now: float | None = None) -> dict:
        """The progress line's figures now."""
        return report.snapshot(self.tally, self.in_flight)


class _Message:
    """The segments of one long message in flight: it is acknowledged once they all are."""

    __slots__ = ("run", "left", "failed")

    def __init__(self, run: Run, segments: int) -> None:
        self.run, self.left, self.failed = run, segments, False

    def answered(self, outcome) -> None:
        run = self.run
        if run.closed:
            return
        run.in_flight -= 1
        if outcome is None:
            run.tally.segments_acknowledged += 1
        else:
            run.failed(outcome)
            self.failed = True
        self.left -= 1
        if not self.left:
            if self.failed:
                run.tally.messages_failed += 1
            else:
                run.tally.messages_acknowledged += 1
        if run.over:
            run._check_finished()


async def log_in(run: Run, stop: asyncio.Event, target: str) -> str | None:
    """The first connection logs in alone (a wrong password costs one attempt), then the
    others together. UsageError when the first cannot (or ``stop`` comes first); returns a
    warning when some of the others cannot (None when they all do)."""
    client = run.client
    first, rest = client.links[0], client.links[1:]
    login = asyncio.ensure_future(client.log_in(first))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([login, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not login.done():
        login.cancel()
        await asyncio.gather(login, return_exceptions=True)
        first.abort("interrupted")
        raise UsageError("interrupted before the first login")
    if login.exception() is not None:
        error = login.exception()
        raise UsageError(f"{target}: {error}" if isinstance(error, LoginRefused) else str(error))
    failures = [e for e in await asyncio.gather(*map(client.log_in, rest),
                                                return_exceptions=True)
                if isinstance(e, (LoginFailed, OSError))]
    if failures:
        return (f"{len(client.open)} of {len(client.links)} connections open ({failures[0]}); "
                "going on with those")
    return None
