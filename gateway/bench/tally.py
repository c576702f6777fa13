"""What one run of ``cmpp-gateway bench`` counts, and the recorder that counts it.

A ``Tally`` holds every count of a run, its per-second timeline and its latency histograms
(SUBMIT latency by Msg_level, report latency). It is JSON-able (``to_json``/``from_json``), and
the tallies of several worker processes merge into one (``merge``): counts add up, histograms
merge bucket by bucket, seconds line up by their number. The ``Recorder`` fills a tally from
what the tool's connections read: every SUBMIT_RESP, every DELIVER, logins and lost
connections; the ``Timeline`` turns its running totals into one ``Second`` a second. A SUBMIT
costs the recorder a few dict operations and no clock reading: the tool must never be the
bottleneck of what it measures.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from cmpp import events as ev
from gateway.status import ReceiptCodes

from .histogram import Histogram

_COUNTS = ("messages_started", "messages_acknowledged", "messages_failed", "segments_started",
           "segments_acknowledged", "segments_failed", "results_ok", "reports_expected", "reports",
           "reports_unmatched", "mo", "logins", "authenticator_mismatches")
_COUNTERS = ("results", "failures", "report_stats", "report_statuses", "connection_errors")
_SECOND_COUNTS = ("acknowledged", "throttled", "failed", "reports")


@dataclass
class Second:
    """What happened during one second of the run (the last one may be shorter); ``latency``
    only when a chart is drawn."""

    acknowledged: int = 0
    throttled: int = 0
    failed: int = 0
    reports: int = 0
    latency: Histogram | None = None


@dataclass
class Tally:
    """Every count of one run. Times are on the event loop's clock (the system's monotonic
    clock, the same in every process); ``start`` is when the first SUBMIT could go (all
    connections up), ``end`` when the last SUBMIT was answered or given up."""

    start: float = 0.0
    end: float | None = None
    messages_started: int = 0
    messages_acknowledged: int = 0
    messages_failed: int = 0
    segments_started: int = 0
    segments_acknowledged: int = 0
    segments_failed: int = 0
    results_ok: int = 0             # SUBMIT_RESPs with Result 0 (apart: the most frequent)
    results: Counter = field(default_factory=Counter)          # any other Result -> count
    failures: Counter = field(default_factory=Counter)         # why a segment failed -> count
    latency_by_level: dict[int, Histogram] = field(default_factory=dict)   # Msg_level ->
    reports_expected: int = 0
    reports: int = 0
    reports_unmatched: int = 0
    report_stats: Counter = field(default_factory=Counter)     # Stat -> count
    report_statuses: Counter = field(default_factory=Counter)  # common status -> count
    report_latency: Histogram = field(default_factory=Histogram)
    mo: int = 0
    connection_errors: Counter = field(default_factory=Counter)
    logins: int = 0
    authenticator_mismatches: int = 0      # logins whose AuthenticatorISMG was not the spec's
    authenticator_all_zero: bool = False   # ... and was 16 zero bytes
    seconds: list[Second] = field(default_factory=list)
    timeline_latency: bool = False         # keep a latency histogram per second (for a chart)
    second_latency: Histogram | None = None    # ... of the second under way
    cpu_seconds: float = 0.0               # CPU time of the process(es) making the load

    def __post_init__(self) -> None:
        if self.timeline_latency and self.second_latency is None:
            self.second_latency = Histogram()

    def result_counts(self) -> dict[int, int]:
        """SUBMIT_RESPs by Result, 0 included."""
        return {0: self.results_ok, **self.results} if self.results_ok else dict(self.results)

    @property
    def latency(self) -> Histogram:
        """SUBMIT latency of every Msg_level together."""
        return Histogram.merged(self.latency_by_level.values())

    @property
    def in_flight(self) -> int:
        return self.segments_started - self.segments_acknowledged - self.segments_failed

    def elapsed(self, now: float) -> float:
        return max(1e-9, (self.end if self.end is not None else now) - self.start)

    # Several processes' tallies.

    def to_json(self) -> dict:
        """Everything, JSON-able; ``from_json`` reads it back."""
        return {
            "start": self.start, "end": self.end, "cpu_seconds": self.cpu_seconds,
            **{name: getattr(self, name) for name in _COUNTS},
            **{name: [[k, n] for k, n in getattr(self, name).items()] for name in _COUNTERS},
            "latency_by_level": [[level, h.to_json()] for level, h in
                                 self.latency_by_level.items()],
            "report_latency": self.report_latency.to_json(),
            "authenticator_all_zero": self.authenticator_all_zero,
            "timeline_latency": self.timeline_latency,
            "seconds": [[getattr(s, name) for name in _SECOND_COUNTS]
                        + [s.latency.to_json() if s.latency is not None else None]
                        for s in self.seconds],
        }

    @classmethod
    def from_json(cls, data: dict) -> Tally:
        tally = cls(start=data["start"], end=data["end"], cpu_seconds=data["cpu_seconds"],
                    authenticator_all_zero=data["authenticator_all_zero"],
                    timeline_latency=data["timeline_latency"],
                    report_latency=Histogram.from_json(data["report_latency"]),
                    **{name: data[name] for name in _COUNTS},
                    **{name: Counter({k: n for k, n in data[name]}) for name in _COUNTERS})
        tally.latency_by_level = {int(level): Histogram.from_json(h)
                                  for level, h in data["latency_by_level"]}
        tally.second_latency = None
        for *counts, latency in data["seconds"]:
            tally.seconds.append(Second(*counts, latency=None if latency is None
                                        else Histogram.from_json(latency)))
        return tally

    def merge(self, other: Tally) -> Tally:
        """Add another process's tally to this one (seconds line up by number); returns self.
        ``start`` becomes the earlier start and ``end`` the later end."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _COUNTERS:
            getattr(self, name).update(getattr(other, name))
        for level, histogram in other.latency_by_level.items():
            self.latency_by_level.setdefault(level, Histogram()).merge(histogram)
        self.report_latency.merge(other.report_latency)
        self.authenticator_all_zero |= other.authenticator_all_zero
        self.cpu_seconds += other.cpu_seconds
        self._merge_seconds(other.seconds)
        ends = [t.end for t in (self, other) if t.end is not None]
        self.start = min(self.start, other.start)
        self.end = max(ends) if ends else None
        return self

    def _merge_seconds(self, seconds: list[Second]) -> None:
        while len(self.seconds) < len(seconds):
            self.seconds.append(Second(latency=Histogram() if self.timeline_latency else None))
        for mine, theirs in zip(self.seconds, seconds):
            for name in _SECOND_COUNTS:
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
            if mine.latency is not None and theirs.latency is not None:
                mine.latency.merge(theirs.latency)


class Timeline:
    """Once a second from the tally's start, one ``Second`` from the running totals (what was
    acknowledged, throttled, failed and reported since the last one), and the latency
    histogram of the second that ends; ``finish`` adds the last, shorter one."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self._totals = (0, 0, 0, 0)

    def tick(self) -> None:
        tally = self.tally
        totals = (tally.segments_acknowledged, tally.results[8], tally.segments_failed,
                  tally.reports)
        tally.seconds.append(Second(*(now - then for now, then in zip(totals, self._totals)),
                                    latency=tally.second_latency))
        self._totals = totals
        if tally.timeline_latency:
            tally.second_latency = Histogram()

    async def run(self) -> None:
        loop, tick = asyncio.get_running_loop(), 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, self.tally.start + tick - loop.time()))
            self.tick()

    def finish(self) -> None:
        """The last second, if anything happened in it."""
        tally = self.tally
        if (tally.segments_acknowledged, tally.results[8], tally.segments_failed,
                tally.reports) != self._totals:
            self.tick()
        tally.second_latency = None


class Recorder:
    """Takes what the tool's connections (``wire``) read into a Tally: every SUBMIT_RESP
    (Result, latency by Msg_level), every DELIVER (a report is classified with ``codes`` and
    matched to its SUBMIT by Msg_Id, also when it comes before the SUBMIT_RESP), logins,
    login refusals and lost connections. A report for a SUBMIT of another process stays in
    ``early`` and that SUBMIT in the other's ``awaiting``: ``match_across`` pairs them at the
    end."""

    def __init__(self, tally: Tally, codes: ReceiptCodes, clock) -> None:
        self.tally, self.codes, self.clock = tally, codes, clock
        self.login_refusal: ev.LoginRejected | None = None
        self.awaiting: dict[int, float] = {}     # Msg_Id -> first send; its report is to come
        self.early: dict[int, float] = {}        # Msg_Id -> report time; no SUBMIT_RESP yet
        self.all_reported = asyncio.Event()
        self.closing = False                     # connections ending now are not errors

    def submit_resp(self, outgoing, result: int, msg_id: int, rtt: float) -> None:
        """A SUBMIT_RESP to ``outgoing`` (a ``wire.Outgoing``) after ``rtt`` seconds."""
        tally = self.tally
        if result:
            tally.results[result] += 1
        else:
            tally.results_ok += 1
        histogram = tally.latency_by_level.get(outgoing.msg_level)
        if histogram is None:
            histogram = tally.latency_by_level[outgoing.msg_level] = Histogram()
        histogram.record(rtt)
        if tally.second_latency is not None:
            tally.second_latency.record(rtt)
        if not result and outgoing.report:
            self._expect_report(msg_id, self.clock() - rtt)

    def on_event(self, conn, event: ev.Event) -> None:
        """A login's events (the session's, while a connection logs in)."""
        kind, tally = type(event), self.tally
        if kind is ev.LoginSucceeded:
            tally.logins += 1
        elif kind is ev.AuthenticatorMismatch:
            tally.authenticator_mismatches += 1
            tally.authenticator_all_zero = event.all_zero
        elif kind is ev.LoginRejected:
            self.login_refusal = self.login_refusal or event
            tally.connection_errors[f"login refused: {event.reason}"] += 1
        elif kind is ev.ConnectionTerminated:
            self.connection_ended(event.reason)

    def connection_ended(self, reason: str) -> None:
        if not self.closing and not reason.startswith("login"):
            self.tally.connection_errors[reason] += 1

    def _expect_report(self, msg_id: int, sent: float) -> None:
        self.tally.reports_expected += 1
        arrived = self.early.pop(msg_id, None)
        if arrived is None:
            self.awaiting[msg_id] = sent
            self.all_reported.clear()
        else:                                     # the report came before its SUBMIT_RESP
            self.tally.reports_unmatched -= 1
            self.tally.report_latency.record(max(0.0, arrived - sent))

    def mo_received(self) -> None:
        self.tally.mo += 1

    def report(self, msg_id: int, stat: str) -> None:
        """A status report (already answered with DELIVER_RESP)."""
        tally, now = self.tally, self.clock()
        tally.reports += 1
        tally.report_stats[stat] += 1
        status = self.codes.classify(stat).status
        tally.report_statuses[status.value if status else "pending"] += 1
        sent = self.awaiting.pop(msg_id, None)
        if sent is None:
            tally.reports_unmatched += 1
            self.early[msg_id] = now
        else:
            tally.report_latency.record(now - sent)
        if not self.awaiting:
            self.all_reported.set()


def match_across(tally: Tally, awaiting: dict[int, float], early: dict[int, float]) -> None:
    """Pair the reports that reached one process with the SUBMITs another process sent (the
    center sends a report on any connection of the account): ``awaiting`` and ``early`` are
    every process's leftovers together; each pair found is a report matched, with its
    latency, in the merged ``tally``."""
    for msg_id in awaiting.keys() & early.keys():
        tally.reports_unmatched -= 1
        tally.report_latency.record(max(0.0, early[msg_id] - awaiting[msg_id]))
