"""What ``cmpp-gateway bench`` measures, and how it is shown: latency percentiles, the tally
of one run and its per-second timeline, the recorder that fills it from the pool's events, the
progress line, the summary (text or JSON) and the PNG chart.

The chart imports matplotlib only when one is drawn. The benchmarks in ``gateway.bench``
use ``percentile`` for their latency figures.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import cmpp
from cmpp import events as ev
from gateway.channel import (
    ConnectionClosed,
    OutcomeUnknown,
    SubmitRejectedError,
    SubmitThrottledError,
    authenticator_mismatch,
)
from gateway.status import ReceiptCodes

CHART_HINT = ("--chart needs matplotlib, which is not installed: pip install matplotlib "
              "(or pip install 'cmpp-gateway[chart]')")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of an already sorted sequence, nearest rank below:
    the value at index floor(n * q / 100), so p50 of [a, b] is b. 0.0 for no values."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def latency_ms(values: Sequence[float], qs: Sequence[float] = (50, 90, 99),
               with_max: bool = True) -> dict[str, float]:
    """Percentiles (and max) of latencies given in seconds, as milliseconds: {"p50": ...}."""
    ordered = sorted(values)
    out = {f"p{q:g}": round(percentile(ordered, q) * 1e3, 3) for q in qs}
    if with_max:
        out["max"] = round(ordered[-1] * 1e3, 3) if ordered else 0.0
    return out


@dataclass
class Second:
    """What happened during one second of the run."""

    acknowledged: int = 0
    throttled: int = 0
    failed: int = 0
    reports: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class Tally:
    """Every count of one run. Times are on the event loop's clock; ``start`` is when the
    first SUBMIT could go (all connections up), ``end`` when the last submitter finished."""

    start: float = 0.0
    end: float | None = None
    messages_started: int = 0
    messages_acknowledged: int = 0
    messages_failed: int = 0
    segments_started: int = 0
    segments_acknowledged: int = 0
    segments_failed: int = 0
    results: Counter = field(default_factory=Counter)          # SUBMIT_RESP Result -> count
    failures: Counter = field(default_factory=Counter)         # why a segment failed -> count
    latencies: list[float] = field(default_factory=list)       # every SUBMIT_RESP, seconds
    reports_expected: int = 0
    reports: int = 0
    reports_unmatched: int = 0
    report_stats: Counter = field(default_factory=Counter)     # Stat -> count
    report_statuses: Counter = field(default_factory=Counter)  # common status -> count
    report_latencies: list[float] = field(default_factory=list)
    mo: int = 0
    connection_errors: Counter = field(default_factory=Counter)
    logins: int = 0
    authenticator_mismatches: int = 0      # logins whose AuthenticatorISMG was not the spec's
    authenticator_all_zero: bool = False   # ... and was 16 zero bytes
    seconds: list[Second] = field(default_factory=list)

    def second(self, now: float) -> Second:
        """The bucket of the second ``now`` falls in (counted from ``start``)."""
        index = max(0, int(now - self.start))
        while len(self.seconds) <= index:
            self.seconds.append(Second())
        return self.seconds[index]

    @property
    def in_flight(self) -> int:
        return self.segments_started - self.segments_acknowledged - self.segments_failed

    def elapsed(self, now: float) -> float:
        return max(1e-9, (self.end if self.end is not None else now) - self.start)


def result_name(code: int) -> str:
    try:
        return cmpp.SubmitResult(code).name
    except ValueError:
        return "OTHER"


FAILURES = {SubmitThrottledError: "Result 8 beyond the resend cap",
            OutcomeUnknown: "no SUBMIT_RESP (outcome unknown)", ConnectionClosed: "pool closed"}


def failure_name(error: Exception) -> str:
    """Why pool.submit failed, in a few words (a key of Tally.failures)."""
    if isinstance(error, SubmitRejectedError):
        return f"Result {error.result} ({result_name(error.result)})"
    if isinstance(error, ValueError):
        return f"not encodable: {error}"
    return next((name for kind, name in FAILURES.items() if isinstance(error, kind)),
                type(error).__name__)


def warnings(tally: Tally) -> list[str]:
    """What the run did not fail on but an operator must know before pointing the gateway at
    this center."""
    if not tally.authenticator_mismatches:
        return []
    return [f"{authenticator_mismatch(tally.authenticator_all_zero)} (on "
            f"{tally.authenticator_mismatches} of {tally.logins} logins): the gateway logs in to "
            'such a center with verify_authenticator = "warn" (the default) and refuses it with '
            '"refuse"']


def summary(tally: Tally, now: float, settings: dict) -> dict:
    """The run as a JSON-able dict; ``settings`` describes the target and the load (never the
    password). The text summary is rendered from this same dict."""
    elapsed = tally.elapsed(now)
    outstanding = max(0, tally.reports_expected - (tally.reports - tally.reports_unmatched))
    return {
        **settings,
        "elapsed_seconds": round(elapsed, 3),
        "messages": {"started": tally.messages_started,
                     "acknowledged": tally.messages_acknowledged,
                     "failed": tally.messages_failed},
        "segments": {"submitted": tally.segments_started,
                     "acknowledged": tally.segments_acknowledged,
                     "failed": tally.segments_failed, "unanswered": tally.in_flight},
        "throughput": {"segments_per_second": round(tally.segments_acknowledged / elapsed, 1),
                       "messages_per_second": round(tally.messages_acknowledged / elapsed, 1)},
        "submit_latency_ms": {"responses": len(tally.latencies), **latency_ms(tally.latencies)},
        "results": [{"result": code, "name": result_name(code), "count": count}
                    for code, count in sorted(tally.results.items())],
        "failures": dict(tally.failures.most_common()),
        "reports": {"expected": tally.reports_expected, "received": tally.reports,
                    "unmatched": tally.reports_unmatched, "outstanding": outstanding,
                    "by_stat": dict(tally.report_stats.most_common()),
                    "by_status": dict(tally.report_statuses.most_common()),
                    "latency_ms": latency_ms(tally.report_latencies, (50, 99), False)},
        "mo_received": tally.mo,
        "connection_errors": dict(tally.connection_errors.most_common()),
        "authenticator_mismatches": tally.authenticator_mismatches,
        "warnings": warnings(tally),
    }


def _n(value: int) -> str:
    return f"{value:,}"


def _pairs(counts: dict) -> str:
    return "; ".join(f"{key}: {_n(value)}" for key, value in counts.items()) or "none"


def format_summary(s: dict) -> str:
    """The summary dict as lines for people."""
    load = s["load"]
    limit = f"{load['count']:,} messages" if load["count"] else f"{load['duration']:g} s"
    tps = f"TPS {load['tps']:g}" if load["tps"] else "no TPS limit"
    m, g, lat = s["messages"], s["segments"], s["submit_latency_ms"]
    lines = [
        f"target       {s['target']}, account {s['account']}"
        + (" (built-in simulator)" if s["simulator"] else ""),
        f"load         {load['connections']} connections x window {load['window']}, {tps}, "
        f"{limit}, mix {load['mix']}",
        f"elapsed      {s['elapsed_seconds']:.2f} s"
        + ("  (interrupted by Ctrl-C)" if s["interrupted"] else ""),
        f"messages     {_n(m['started'])} started, {_n(m['acknowledged'])} acknowledged, "
        f"{_n(m['failed'])} failed",
        f"segments     {_n(g['submitted'])} submitted, {_n(g['acknowledged'])} acknowledged, "
        f"{_n(g['failed'])} failed, {_n(g['unanswered'])} unanswered",
        f"throughput   {s['throughput']['segments_per_second']:,.1f} segments/s, "
        f"{s['throughput']['messages_per_second']:,.1f} messages/s",
        f"latency      SUBMIT p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms ({_n(lat['responses'])} responses)",
        "results      " + ("; ".join(f"{r['result']} {r['name']}: {_n(r['count'])}"
                                     for r in s["results"]) or "none"),
        f"failures     {_pairs(s['failures'])}",
    ]
    r = s["reports"]
    if s["reports_requested"] or r["received"]:
        lines += [f"reports      {_n(r['received'])} received for {_n(r['expected'])} expected: "
                  f"{_n(r['outstanding'])} outstanding, {_n(r['unmatched'])} unmatched; latency "
                  f"p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms",
                  f"  by Stat    {_pairs(r['by_stat'])}",
                  f"  by status  {_pairs(r['by_status'])} (provider table {s['provider']})"]
    if s["mo_received"]:
        lines.append(f"MO           {_n(s['mo_received'])} received")
    lines.append(f"connections  {_pairs(s['connection_errors'])}"
                 if s["connection_errors"] else "connections  no errors")
    lines += [f"warning      {warning}" for warning in s["warnings"]]
    return "\n".join(lines)


def progress_line(tally: Tally, now: float, in_flight: int) -> str:
    """One line for stderr: elapsed, SUBMITs sent (answered + ``in_flight``, those in the
    connections' windows), acknowledged, rates, in flight, Result 8, errors, reports."""
    elapsed = max(1e-9, now - tally.start)
    index = int(now - tally.start) - 1
    if index < 0:                       # not one whole second yet: all so far
        last = tally.segments_acknowledged
    else:
        last = tally.seconds[index].acknowledged if index < len(tally.seconds) else 0
    sent = sum(tally.results.values()) + in_flight
    return (f"[{elapsed:6.1f}s] submitted {_n(sent)}  acked "
            f"{_n(tally.segments_acknowledged)}  rate {_n(last)}/s (avg "
            f"{tally.segments_acknowledged / tally.elapsed(now):,.0f}/s)  in flight {in_flight}  "
            f"result 8: {_n(tally.results[8])}  errors {_n(tally.segments_failed)}  "
            f"reports {_n(tally.reports)}")


def check_chart_support() -> None:
    """Raise RuntimeError(CHART_HINT) when matplotlib cannot be imported."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise RuntimeError(CHART_HINT) from None


def write_chart(tally: Tally, path: str, title: str) -> None:
    """A PNG at ``path``: SUBMIT_RESP rate (acknowledged, Result 8), reports and failures per
    second above, SUBMIT latency p50/p99 per second below. RuntimeError without matplotlib."""
    check_chart_support()
    from matplotlib.figure import Figure

    seconds = list(range(1, len(tally.seconds) + 1))
    figure = Figure(figsize=(10, 6), dpi=100)
    rate, latency = figure.subplots(2, 1, sharex=True)
    for label, key in (("acknowledged", "acknowledged"), ("Result 8", "throttled"),
                       ("failed", "failed"), ("reports", "reports")):
        values = [getattr(s, key) for s in tally.seconds]
        if key == "acknowledged" or any(values):
            rate.plot(seconds, values, label=label, marker=".")
    rate.set_ylabel("per second")
    rate.set_title(title)
    rate.legend(loc="upper right")
    rate.grid(True, alpha=0.3)
    for q in (50, 99):
        latency.plot(seconds, [percentile(sorted(s.latencies), q) * 1e3 for s in tally.seconds],
                     label=f"SUBMIT p{q}", marker=".")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("second of the run")
    latency.legend(loc="upper right")
    latency.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")


def json_text(summary_: dict) -> str:
    return json.dumps(summary_, indent=2, ensure_ascii=False)


class Recorder:
    """Takes the pool's events into a Tally: every SUBMIT_RESP (Result, latency), every DELIVER
    (acknowledged at once; a report is classified with ``codes`` and matched to its SUBMIT by
    Msg_Id, also when it comes before the SUBMIT_RESP), login refusals and lost connections."""

    def __init__(self, tally: Tally, codes: ReceiptCodes, clock) -> None:
        self.tally, self.codes, self.clock = tally, codes, clock
        self.login_refusal: ev.LoginRejected | None = None
        self.awaiting: dict[int, float] = {}     # Msg_Id -> first send; its report is to come
        self.early: dict[int, float] = {}        # Msg_Id -> report time; no SUBMIT_RESP yet
        self.all_reported = asyncio.Event()
        self.closing = False                     # connections ending now are not errors

    def on_event(self, conn, event: ev.Event) -> None:
        kind, now = type(event), self.clock()
        if kind is ev.SubmitAcknowledged:
            self._response(0, event.rtt, now)
            if event.request.registered_delivery == 1:
                self._expect_report(event.response.msg_id, now - event.rtt)
        elif kind is ev.SubmitThrottled:
            self._response(8, event.rtt, now).throttled += 1
        elif kind is ev.SubmitRejected:
            self._response(event.response.result, event.rtt, now)
        elif kind is ev.LoginSucceeded:
            self.tally.logins += 1
        elif kind is ev.AuthenticatorMismatch:
            self.tally.authenticator_mismatches += 1
            self.tally.authenticator_all_zero = event.all_zero
        elif kind is ev.LoginRejected:
            self.login_refusal = self.login_refusal or event
            self.tally.connection_errors[f"login refused: {event.reason}"] += 1
        elif kind is ev.ConnectionTerminated and not self.closing \
                and not event.reason.startswith("login"):
            self.tally.connection_errors[event.reason] += 1

    def _response(self, result: int, rtt: float, now: float) -> Second:
        self.tally.results[result] += 1
        self.tally.latencies.append(rtt)
        second = self.tally.second(now)
        second.latencies.append(rtt)
        return second

    def _expect_report(self, msg_id: int, sent: float) -> None:
        self.tally.reports_expected += 1
        arrived = self.early.pop(msg_id, None)
        if arrived is None:
            self.awaiting[msg_id] = sent
            self.all_reported.clear()
        else:                                     # the report came before its SUBMIT_RESP
            self.tally.reports_unmatched -= 1
            self.tally.report_latencies.append(max(0.0, arrived - sent))

    def on_deliver(self, conn, event: ev.ReportReceived | ev.MessageReceived) -> None:
        conn.acknowledge_deliver(event.deliver)
        tally = self.tally
        if not isinstance(event, ev.ReportReceived):
            tally.mo += 1
            return
        now, stat, msg_id = self.clock(), event.report.stat, event.report.msg_id
        tally.reports += 1
        tally.second(now).reports += 1
        tally.report_stats[stat] += 1
        status = self.codes.classify(stat).status
        tally.report_statuses[status.value if status else "pending"] += 1
        sent = self.awaiting.pop(msg_id, None)
        if sent is None:
            tally.reports_unmatched += 1
            self.early[msg_id] = now
        else:
            tally.report_latencies.append(now - sent)
        if not self.awaiting:
            self.all_reported.set()


class Progress:
    """The progress line on ``err`` once a second from the tally's start: rewritten in place
    (\\r) on a terminal, one line per second otherwise; a last one when cancelled."""

    def __init__(self, tally: Tally, err, in_flight) -> None:
        self.tally, self.err, self.in_flight = tally, err, in_flight
        self.tty = bool(getattr(err, "isatty", None) and err.isatty())
        self._width = 0

    async def run(self) -> None:
        loop, tick = asyncio.get_running_loop(), 0
        try:
            while True:
                tick += 1
                await asyncio.sleep(max(0.0, self.tally.start + tick - loop.time()))
                self.show(loop.time())
        except asyncio.CancelledError:
            self.show(loop.time())
            if self.tty:
                self.err.write("\n")
            raise

    def show(self, now: float) -> None:
        line = progress_line(self.tally, now, self.in_flight())
        self.err.write("\r" + line.ljust(self._width) if self.tty else line + "\n")
        self._width = len(line)
        self.err.flush()
