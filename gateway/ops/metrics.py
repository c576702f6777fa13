"""Every Prometheus metric of the daemon, defined here and recorded through small methods.

Labels never carry a phone number or content: channels, connections (``channel#slot``),
providers, common statuses, wire result codes, and raw Stat values only when the provider's
table lists them (the rest share the label ``unmapped``), so cardinality stays bounded. Label
children are bound once per channel, not per message. Gauges that describe state (connections
by state, window in use, messages by status) are computed when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from cmpp import events as ev
from cmpp.pdus import ActiveTest, Submit
from gateway.status import Classification, ReceiptCodes

from .counters import CounterFamily, FamiliesCollector, GaugeFamily, HistogramFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RECEIPT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 6 * 3600, 24 * 3600, 72 * 3600)
# A message's wait: from milliseconds (a code on an idle channel) to an hour (a marketing
# backlog behind a TPS limit); and its whole life, up to the report timeout.
QUEUE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
FINAL_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600,
                 72 * 3600)
CONNECTION_STATES = ("established", "logging in", "terminating", "disconnected")
RESEND_REASONS = ("timeout", "flow_control", "connection_lost", "deferred")
DEFER_REASONS = ("flow_control", "connection_lost", "other")


class Metrics:
    """The daemon's metrics in their own registry (one per daemon, so tests stay apart).
    Record them from the event loop's thread only (see gateway.counters)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.logins = CounterFamily("cmpp_logins", "Login answers by CONNECT_RESP Status "
                              "(or 'timeout', 'unreachable')", ["channel", "status"])
        self.submits = CounterFamily("cmpp_submits", "SUBMIT_RESPs by Result", ["channel", "result"])
        self.submit_latency = HistogramFamily("cmpp_submit_latency_seconds",
                                        "SUBMIT to SUBMIT_RESP, from the first send",
                                        ["channel"], buckets=LATENCY_BUCKETS)
        self.resends = CounterFamily("cmpp_resends", "SUBMITs sent again, by reason (timeout: no "
                               "response after T; flow_control: Result 8; connection_lost: "
                               "on another connection; deferred: a message that waited)",
                               ["channel", "reason"])
        self.deferred = CounterFamily("cmpp_messages_deferred", "Messages set aside to be "
                                      "submitted again later, by reason (flow_control: Result 8 "
                                      "beyond the resend cap; connection_lost: lost connections "
                                      "in a row; other)", ["channel", "reason"])
        self.active_tests = CounterFamily("cmpp_active_tests", "ACTIVE_TEST probes we sent, by outcome",
                                    ["channel", "outcome"])
        self.disconnects = CounterFamily("cmpp_disconnects", "Connections that ended other than by "
                                   "our TERMINATE (the pool reconnects them)", ["channel"])
        self.malformed = CounterFamily("cmpp_malformed_pdus", "Frames from the ISMG that did not decode",
                                 ["channel"])
        self.receipts = CounterFamily("cmpp_receipts", "Status reports by provider and common status "
                                "('pending' for intermediate states)",
                                ["channel", "provider", "status"])
        self.receipt_stats = CounterFamily("cmpp_receipt_stats", "Status reports by raw Stat; codes the "
                                     "provider's table does not list count as 'unmapped'",
                                     ["provider", "stat"])
        self.duplicate_receipts = CounterFamily("cmpp_duplicate_receipts", "Status reports seen before",
                                          ["channel"])
        self.receipt_latency = HistogramFamily("cmpp_receipt_latency_seconds",
                                         "SUBMIT_RESP to status report", ["channel"],
                                         buckets=RECEIPT_BUCKETS)
        self.accept_to_submit = HistogramFamily(
            "cmpp_accept_to_submit_seconds", "From the API's acceptance of a message to its "
            "first SUBMIT, by priority: urgent (verification codes, messages marked urgent), "
            "notification, marketing", ["channel", "priority"], buckets=QUEUE_BUCKETS)
        self.accept_to_final = HistogramFamily(
            "cmpp_accept_to_final_seconds", "From the API's acceptance of a message to its "
            "final status (a report's, or a SUBMIT_RESP's refusal), by priority",
            ["channel", "priority"], buckets=FINAL_BUCKETS)
        self.mo = CounterFamily("cmpp_mo_messages", "MO messages received (complete or expired "
                          "incomplete)", ["channel", "complete"])
        self.messages = CounterFamily("cmpp_messages_final", "Messages that reached a final status",
                                ["channel", "status"])
        self.callbacks = CounterFamily("cmpp_callbacks", "Callback attempts by outcome",
                                 ["app", "kind", "outcome"])
        self.callbacks_held = CounterFamily(
            "cmpp_callbacks_held", "Callbacks kept back (not sent, no attempt counted) because "
            "their URL has not passed its echostr check (jsms format)", ["app", "kind"])
        self.callback_verifications = CounterFamily(
            "cmpp_callback_verifications", "echostr checks of callback URLs (jsms format), "
            "by outcome: passed or failed", ["outcome"])
        self.callback_url_verified = GaugeFamily(
            "cmpp_callback_url_verified", "1 when an app's callback URL passed its last echostr "
            "check, 0 when it failed (jsms format)", ["app", "kind"])
        self.code_checks = CounterFamily(
            "cmpp_api_code_checks", "Verification code checks (POST /v1/codes/{msg_id}/valid) "
            "by outcome: ok, invalid (a wrong code), spent (a check after [api] code_attempts "
            "wrong ones), expired, verified (used before), unknown (no such code), missing (no "
            "code given)", ["outcome"])
        self.pruned_rows = CounterFamily("cmpp_store_pruned_rows", "Rows removed by retention, "
                                         "by table (messages.idempotency_key: message "
                                         "idempotency keys forgotten)", ["table"])
        self.unmatched_receipts_expired = CounterFamily(
            "cmpp_unmatched_receipts_expired", "Status reports dropped after "
            "unmatched_report_timeout without matching a message", [])
        self._unmatched_expired = self.unmatched_receipts_expired.labels()   # 0 from the start
        self._channels: dict[str, ChannelMetrics] = {}
        families = [v for v in vars(self).values()
                    if isinstance(v, (CounterFamily, GaugeFamily, HistogramFamily))]
        r.register(FamiliesCollector(families))

    def totals(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Every counter's value now, by family (its attribute name here: "submits",
        "receipts", "messages", "callbacks", ...) and label values: what the console samples
        each minute for its per-minute figures."""
        return {name: {labels: child.value for labels, child in family.children.items()}
                for name, family in vars(self).items() if isinstance(family, CounterFamily)}

    def channel(self, name: str, codes: ReceiptCodes) -> ChannelMetrics:
        if name not in self._channels:
            self._channels[name] = ChannelMetrics(self, name, codes)
        return self._channels[name]

    def watch(self, pools: Callable[[], Iterable], store_counts: Callable[[], dict],
              unmatched: Callable[[], int], callbacks_pending: Callable[[], int] | None = None):
        """Compute the state gauges from these sources at every scrape."""
        self.registry.register(_StateCollector(pools, store_counts, unmatched, callbacks_pending))

    def watch_slots(self, report: Callable[[], dict]) -> None:
        """Several gateways on one store: the slots gauges from ``report()`` (the slot
        keeper's: ``slots`` held here by channel, ``cluster_slots`` held by all, ``gateways``
        alive, ``connections`` by channel) at every scrape."""
        self.registry.register(_SlotsCollector(report))

    def watch_store(self, size: Callable[[], int], writable: Callable[[], tuple[bool, str]],
                    commits: Callable[[], tuple[tuple[float, ...], list[int], float]]) -> None:
        """The store's size on disk, whether it can write, and its transactions' durations
        (bucket bounds, counts by bucket and +Inf, seconds), read at every scrape."""
        self.registry.register(_StoreCollector(size, writable, commits))

    def watch_repeats(self, keys: Callable[[], int], refused: Callable[[], int]) -> None:
        """The API's repeat-window memory: keys held, and sends refused because it was full."""
        self.registry.register(_RepeatsCollector(keys, refused))

    def pruned(self, rows: Mapping[str, int]) -> None:
        for table, count in rows.items():
            if count:
                self.pruned_rows.labels(table).inc(count)

    def unmatched_expired(self, count: int) -> None:
        self._unmatched_expired.inc(count)


class ChannelMetrics:
    """One channel's label children, bound once."""

    def __init__(self, metrics: Metrics, channel: str, codes: ReceiptCodes) -> None:
        self.metrics, self.channel, self.codes = metrics, channel, codes
        self.latency = metrics.submit_latency.labels(channel)
        self.receipt_latency = metrics.receipt_latency.labels(channel)
        self.resent = {reason: metrics.resends.labels(channel, reason)
                       for reason in RESEND_REASONS}
        self._deferred = {reason: metrics.deferred.labels(channel, reason)
                          for reason in DEFER_REASONS}
        self.answered = metrics.active_tests.labels(channel, "answered")
        self.unanswered = metrics.active_tests.labels(channel, "unanswered")
        self.disconnected = metrics.disconnects.labels(channel)
        self.malformed = metrics.malformed.labels(channel)
        self.duplicates = metrics.duplicate_receipts.labels(channel)
        self._results: dict[int, object] = {}
        self._logins: dict[str, object] = {}
        self._receipts: dict[str, tuple] = {}
        self._final: dict[str, object] = {}
        self._submitted_after: dict[str, object] = {}
        self._final_after: dict[str, object] = {}

    def result(self, code: int) -> None:
        child = self._results.get(code)
        if child is None:
            label = str(code) if 0 <= code <= 13 else "other"
            child = self._results[code] = self.metrics.submits.labels(self.channel, label)
        child.inc()

    def login(self, status: str) -> None:
        child = self._logins.get(status)
        if child is None:
            child = self._logins[status] = self.metrics.logins.labels(self.channel, status)
        child.inc()

    def on_event(self, conn, event: ev.Event) -> None:
        """Record a session event of one of this channel's connections."""
        kind = type(event)
        if kind is ev.SubmitAcknowledged or kind is ev.SubmitThrottled or kind is ev.SubmitRejected:
            self.result(event.response.result)
            self.latency.observe(event.rtt)
        elif kind is ev.RequestResent:
            if isinstance(event.request, Submit):
                self.resent["timeout"].inc()
        elif kind is ev.ActiveTestAnswered:
            self.answered.inc()
        elif kind is ev.RequestTimedOut:
            if isinstance(event.request, ActiveTest):
                self.unanswered.inc()
        elif kind is ev.LoginSucceeded:
            self.login("0")
        elif kind is ev.LoginRejected:
            self.login(str(event.status) if event.status is not None else "authenticator")
        elif kind is ev.MalformedPduReceived:
            self.malformed.inc()
        elif kind is ev.ConnectionTerminated:
            if event.reason not in ("terminated", "aborted") and "before login" not in event.reason:
                self.disconnected.inc()

    def resend(self, reason: str) -> None:
        """A SUBMIT sent again (the pool's flow_control and connection_lost, the dispatcher's
        deferred; the session's timeouts are counted from its events)."""
        self.resent[reason].inc()

    def deferred(self, reason: str) -> None:
        """A message set aside to be submitted again after the retry delay."""
        self._deferred[reason].inc()

    def receipt(self, classification: Classification, duplicate: bool,
                latency: float | None) -> None:
        """One status report: by common status, by raw Stat (bounded), its latency."""
        if duplicate:
            self.duplicates.inc()
            return
        children = self._receipts.get(classification.stat)
        if children is None:
            children = self._receipt_children(classification)
        children[0].inc()
        children[1].inc()
        if latency is not None:
            self.receipt_latency.observe(latency)

    def _receipt_children(self, classification: Classification) -> tuple:
        """The (by status, by Stat) children for one raw Stat; kept for the first 4096."""
        status = classification.status.value if classification.status else "pending"
        stat = classification.stat.strip().upper()
        label = stat if self.codes.is_listed(stat) else "unmapped"
        children = (self.metrics.receipts.labels(self.channel, self.codes.provider, status),
                    self.metrics.receipt_stats.labels(self.codes.provider, label))
        if len(self._receipts) < 4096:
            self._receipts[classification.stat] = children
        return children

    def final(self, status: str, count: int = 1) -> None:
        child = self._final.get(status)
        if child is None:
            child = self._final[status] = self.metrics.messages.labels(self.channel, status)
        child.inc(count)

    def submitted_after(self, priority: str, seconds: float) -> None:
        """A message of ``priority`` (its name) went out ``seconds`` after its acceptance."""
        child = self._submitted_after.get(priority)
        if child is None:
            child = self._submitted_after[priority] = \
                self.metrics.accept_to_submit.labels(self.channel, priority)
        child.observe(seconds)

    def final_after(self, priority: str, seconds: float) -> None:
        """A message of ``priority`` (its name) became final ``seconds`` after its
        acceptance."""
        child = self._final_after.get(priority)
        if child is None:
            child = self._final_after[priority] = \
                self.metrics.accept_to_final.labels(self.channel, priority)
        child.observe(seconds)

    def mo(self, complete: bool) -> None:
        self.metrics.mo.labels(self.channel, "true" if complete else "false").inc()


class _SlotsCollector(Collector):
    """The shared slots of each channel, read at scrape time from the slot keeper."""

    def __init__(self, report) -> None:
        self.report = report

    def collect(self):
        report = self.report()
        held = GaugeMetricFamily("cmpp_slot_held", "1 for each of the channel's connection "
                                 "slots this gateway holds (several gateways on one store)",
                                 labels=["channel", "slot"])
        cluster = GaugeMetricFamily("cmpp_cluster_slots_held", "The channel's connection slots "
                                    "held by all gateways on the store", labels=["channel"])
        for channel, connections in report["connections"].items():
            mine = set(report["slots"].get(channel, ()))
            for slot in range(connections):
                held.add_metric([channel, str(slot)], 1 if slot in mine else 0)
            cluster.add_metric([channel], report["cluster_slots"].get(channel, 0))
        yield held
        yield cluster
        yield GaugeMetricFamily("cmpp_cluster_gateways", "Gateways alive on the store",
                                value=report["gateways"])

    def describe(self):
        return []


class _StateCollector(Collector):
    """Gauges read at scrape time from the pools and the store."""

    def __init__(self, pools, store_counts, unmatched, callbacks_pending) -> None:
        self.pools, self.store_counts = pools, store_counts
        self.unmatched, self.callbacks_pending = unmatched, callbacks_pending

    def collect(self):
        states = GaugeMetricFamily("cmpp_connections", "Connections by state",
                                   labels=["channel", "state"])
        window = GaugeMetricFamily("cmpp_window_in_use", "Requests waiting for responses",
                                   labels=["channel", "connection"])
        up = GaugeMetricFamily("cmpp_channel_up", "1 when the channel is healthy (logged in, "
                               "not refused)", labels=["channel"])
        wanted = GaugeMetricFamily("cmpp_connections_wanted", "Connections the channel should "
                                   "hold", labels=["channel"])
        for status in self.pools():
            counts = dict.fromkeys(CONNECTION_STATES, 0)
            for conn in status.connections:
                state = conn.state if conn.state in counts else "disconnected"
                counts[state] += 1
                window.add_metric([status.channel, conn.name], conn.in_window)
            for state, count in counts.items():
                states.add_metric([status.channel, state], count)
            up.add_metric([status.channel], 1 if status.healthy else 0)
            wanted.add_metric([status.channel], status.wanted)
        yield from (states, window, up, wanted)
        backlog = GaugeMetricFamily("cmpp_store_messages", "Messages in the store by status",
                                    labels=["status"])
        for status, count in sorted(self.store_counts().items()):
            backlog.add_metric([status], count)
        yield backlog
        yield GaugeMetricFamily("cmpp_unmatched_receipts", "Status reports whose Msg_Id matches "
                                "no segment (yet)", value=self.unmatched())
        if self.callbacks_pending is not None:
            yield GaugeMetricFamily("cmpp_callbacks_pending", "Callbacks waiting to be sent",
                                    value=self.callbacks_pending())

    def describe(self):
        return []


class _StoreCollector(Collector):
    """The store's gauges and commit histogram, read at scrape time."""

    def __init__(self, size, writable, commits) -> None:
        self.size, self.writable, self.commits = size, writable, commits

    def collect(self):
        yield GaugeMetricFamily("cmpp_store_size_bytes", "The store's size on disk (SQLite: "
                                "the file and its write-ahead log; PostgreSQL: its tables "
                                "with their indexes)", value=self.size())
        yield GaugeMetricFamily("cmpp_store_writable", "1 while the store can write, 0 while "
                                "it cannot (disk full, I/O error, read-only, database "
                                "unreachable)", value=1 if self.writable()[0] else 0)
        bounds, counts, seconds = self.commits()
        cumulative, total = [], 0
        for bound, count in zip((*map(str, bounds), "+Inf"), counts):
            total += count
            cumulative.append((bound, total))
        histogram = HistogramMetricFamily("cmpp_store_commit_seconds", "Store transactions "
                                          "(group commits) by duration")
        histogram.add_metric([], cumulative, seconds)
        yield histogram

    def describe(self):
        return []


class _RepeatsCollector(Collector):
    def __init__(self, keys, refused) -> None:
        self.keys, self.refused = keys, refused

    def collect(self):
        yield GaugeMetricFamily("cmpp_api_repeat_keys", "Sends remembered for the repeat "
                                "rule (50034), at most [api] repeat_keys", value=self.keys())
        yield CounterMetricFamily("cmpp_api_repeat_window_full", "Sends refused (50009) "
                                  "because the repeat rule's memory was full", value=self.refused())

    def describe(self):
        return []
