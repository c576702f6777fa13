"""How ``cmpp-gateway bench`` shows what it measured (``tally``): the progress line, the
summary (text or JSON, with SUBMIT latency percentiles overall and per Msg_level, and the
tool's own CPU per SUBMIT) and the PNG chart.

The chart imports matplotlib only when one is drawn. The benchmarks in ``gateway.bench``
use ``percentile`` for their latency figures.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Sequence

import cmpp
from gateway.channel import (
    ConnectionClosed,
    OutcomeUnknown,
    SubmitRejectedError,
    SubmitThrottledError,
    authenticator_mismatch,
)

from .histogram import Histogram
from .tally import Tally

CHART_HINT = ("--chart needs matplotlib, which is not installed: pip install matplotlib "
              "(or pip install 'cmpp-gateway[chart]')")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of an already sorted sequence, nearest rank below:
    the value at index floor(n * q / 100), so p50 of [a, b] is b. 0.0 for no values."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def latency_ms(histogram: Histogram, qs: Sequence[float] = (50, 90, 99),
               with_max: bool = True) -> dict[str, float]:
    """Percentiles (and max) of a latency histogram, in milliseconds: {"p50": ...}."""
    out = {f"p{q:g}": histogram.percentile(q) / 1e3 for q in qs}
    if with_max:
        out["max"] = histogram.largest / 1e3
    return out


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
    elapsed, latency = tally.elapsed(now), tally.latency
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
        "submit_latency_ms": {"responses": latency.count, **latency_ms(latency)},
        "submit_latency_ms_by_msg_level": [
            {"msg_level": level, "responses": h.count, **latency_ms(h)}
            for level, h in sorted(tally.latency_by_level.items())],
        "results": [{"result": code, "name": result_name(code), "count": count}
                    for code, count in sorted(tally.result_counts().items())],
        "failures": dict(tally.failures.most_common()),
        "reports": {"expected": tally.reports_expected, "received": tally.reports,
                    "unmatched": tally.reports_unmatched, "outstanding": outstanding,
                    "by_stat": dict(tally.report_stats.most_common()),
                    "by_status": dict(tally.report_statuses.most_common()),
                    "latency_ms": latency_ms(tally.report_latency, (50, 99), False)},
        "mo_received": tally.mo,
        "tool_cpu": {"seconds": round(tally.cpu_seconds, 3),
                     "cores": round(tally.cpu_seconds / elapsed, 3),
                     "us_per_submit": round(tally.cpu_seconds / latency.count * 1e6, 2)
                     if latency.count else None},
        "connection_errors": dict(tally.connection_errors.most_common()),
        "authenticator_mismatches": tally.authenticator_mismatches,
        "warnings": warnings(tally),
    }


def _n(value: int) -> str:
    return f"{value:,}"


def _pairs(counts: dict) -> str:
    return "; ".join(f"{key}: {_n(value)}" for key, value in counts.items()) or "none"


def _percentiles(lat: dict) -> str:
    return (f"p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, p99 {lat['p99']:.2f} ms, "
            f"max {lat['max']:.2f} ms ({_n(lat['responses'])} responses)")


def _cpu_note(s: dict) -> str:
    """What the tool's own CPU says about the figures."""
    load, cores = s["load"], s["tool_cpu"]["cores"]
    if s["simulator"] and load["processes"] == 1:
        return " (the built-in simulator's included)"
    if cores >= 0.9 * load["processes"] and not load["tps"]:
        return " (the tool itself may have been the limit: try --processes)"
    return ""


def format_summary(s: dict) -> str:
    """The summary dict as lines for people."""
    load = s["load"]
    limit = f"{load['count']:,} messages" if load["count"] else f"{load['duration']:g} s"
    tps = f"TPS {load['tps']:g}" if load["tps"] else "no TPS limit"
    m, g, lat = s["messages"], s["segments"], s["submit_latency_ms"]
    levels = s["submit_latency_ms_by_msg_level"]
    lines = [
        f"target       {s['target']}, account {s['account']}"
        + (" (built-in simulator)" if s["simulator"] else ""),
        f"load         {load['connections']} connections x window {load['window']}, {tps}, "
        f"{limit}, mix {load['mix']}"
        + (f", {load['processes']} processes" if load["processes"] > 1 else ""),
        f"elapsed      {s['elapsed_seconds']:.2f} s"
        + ("  (interrupted by Ctrl-C)" if s["interrupted"] else ""),
        f"messages     {_n(m['started'])} started, {_n(m['acknowledged'])} acknowledged, "
        f"{_n(m['failed'])} failed",
        f"segments     {_n(g['submitted'])} submitted, {_n(g['acknowledged'])} acknowledged, "
        f"{_n(g['failed'])} failed, {_n(g['unanswered'])} unanswered",
        f"throughput   {s['throughput']['segments_per_second']:,.1f} segments/s, "
        f"{s['throughput']['messages_per_second']:,.1f} messages/s",
        f"latency      SUBMIT {_percentiles(lat)}",
        *(f"  Msg_level {by['msg_level']}  {_percentiles(by)}" for by in levels if len(levels) > 1),
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
    cpu = s["tool_cpu"]
    if cpu["us_per_submit"] is not None:
        lines.append(f"tool CPU     {cpu['us_per_submit']:.1f} µs per SUBMIT_RESP, "
                     f"{cpu['cores']:.2f} of a core" + _cpu_note(s))
    lines += [f"warning      {warning}" for warning in s["warnings"]]
    return "\n".join(lines)


def snapshot(tally: Tally, in_flight: int) -> dict:
    """What the progress line shows, as numbers that add up across processes: SUBMITs sent
    (answered + ``in_flight``, those in the connections' windows), acknowledged (all, and in
    the last whole second), Result 8, errors, reports."""
    last = tally.seconds[-1].acknowledged if tally.seconds else tally.segments_acknowledged
    return {"sent": sum(tally.result_counts().values()) + in_flight,
            "acknowledged": tally.segments_acknowledged, "last_second": last,
            "in_flight": in_flight, "throttled": tally.results[8],
            "errors": tally.segments_failed, "reports": tally.reports}


def progress_line(snap: dict, elapsed: float) -> str:
    """One line for stderr from a ``snapshot`` (or several added up)."""
    elapsed = max(1e-9, elapsed)
    return (f"[{elapsed:6.1f}s] submitted {_n(snap['sent'])}  acked "
            f"{_n(snap['acknowledged'])}  rate {_n(snap['last_second'])}/s (avg "
            f"{snap['acknowledged'] / elapsed:,.0f}/s)  in flight {snap['in_flight']}  "
            f"result 8: {_n(snap['throttled'])}  errors {_n(snap['errors'])}  "
            f"reports {_n(snap['reports'])}")


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
        latency.plot(seconds, [s.latency.percentile(q) / 1e3 if s.latency else 0.0
                               for s in tally.seconds], label=f"SUBMIT p{q}", marker=".")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("second of the run")
    latency.legend(loc="upper right")
    latency.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")


def json_text(summary_: dict) -> str:
    return json.dumps(summary_, indent=2, ensure_ascii=False)


class Progress:
    """The progress line on ``err`` once a second from ``start``: rewritten in place (\\r) on a
    terminal, one line per second otherwise; a last one when cancelled. ``snap(now)`` gives
    the figures (a ``snapshot``)."""

    def __init__(self, snap, start: float, err) -> None:
        self.snap, self.start, self.err = snap, start, err
        self.tty = bool(getattr(err, "isatty", None) and err.isatty())
        self._width = 0

    async def run(self) -> None:
        loop, tick = asyncio.get_running_loop(), 0
        try:
            while True:
                tick += 1
                await asyncio.sleep(max(0.0, self.start + tick - loop.time()))
                self.show(loop.time())
        except asyncio.CancelledError:
            self.show(loop.time())
            if self.tty:
                self.err.write("\n")
            raise

    def show(self, now: float) -> None:
        line = progress_line(self.snap(now), now - self.start)
        self.err.write("\r" + line.ljust(self._width) if self.tty else line + "\n")
        self._width = len(line)
        self.err.flush()
