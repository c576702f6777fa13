"""Operating the daemon: Prometheus metrics, logs, and the health and metrics endpoint.

``metrics`` defines every metric in one place and records them through small methods
(``Metrics``, ``ChannelMetrics``, built on the lean families of ``counters``); ``logs`` sets
up logfmt logging with secrets and phone numbers masked and clients' bytes escaped, and
stands in for aiohttp's server logger on a listener (``RequestErrorLog``, with
``SourceThrottle``); ``http`` serves ``/metrics``, ``/healthz`` and ``/readyz``
(``OpsServer``); ``loop`` chooses the event loop, uvloop's when the ``fast`` extra is installed
(``run_loop``, ``loop_name``, ``describe_loop``); ``collector`` sets the cyclic garbage
collector for a long life (``tune_collector``, ``settle_heap``, ``unsettle_heap``).

Offers: Metrics, ChannelMetrics, OpsServer, setup_logging, mask_phone_numbers, RequestErrorLog,
SourceThrottle, LogfmtFormatter, Redactor, LOOPS, LoopUnavailable, loop_factory, run_loop,
loop_name, describe_loop, tune_collector, settle_heap, unsettle_heap.
"""

from .collector import settle as settle_heap
from .collector import tune as tune_collector
from .collector import unsettle as unsettle_heap
from .http import OpsServer
from .logs import (
    LogfmtFormatter,
    Redactor,
    RequestErrorLog,
    SourceThrottle,
    mask_phone_numbers,
    setup_logging,
)
from .loop import CHOICES as LOOPS
from .loop import LoopUnavailable, loop_factory, loop_name
from .loop import describe as describe_loop
from .loop import run as run_loop
from .metrics import ChannelMetrics, Metrics

__all__ = ["LOOPS", "ChannelMetrics", "LogfmtFormatter", "LoopUnavailable", "Metrics",
           "OpsServer", "Redactor", "RequestErrorLog", "SourceThrottle", "describe_loop",
           "loop_factory", "loop_name", "mask_phone_numbers", "run_loop", "settle_heap", "setup_logging",
           "tune_collector", "unsettle_heap"]
