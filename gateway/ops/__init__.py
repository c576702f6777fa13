"""Operating the daemon: Prometheus metrics, logs, and the health and metrics endpoint.

``metrics`` defines every metric in one place and records them through small methods
(``Metrics``, ``ChannelMetrics``, built on the lean families of ``counters``); ``logs`` sets
up logfmt logging with secrets and phone numbers masked and clients' bytes escaped, and
stands in for aiohttp's server logger on a listener (``RequestErrorLog``, with
``SourceThrottle``); ``http`` serves ``/metrics``, ``/healthz`` and ``/readyz``
(``OpsServer``).

Offers: Metrics, ChannelMetrics, OpsServer, setup_logging, mask_phone_numbers, RequestErrorLog,
SourceThrottle, LogfmtFormatter, Redactor.
"""

from .http import OpsServer
from .logs import (
    LogfmtFormatter,
    Redactor,
    RequestErrorLog,
    SourceThrottle,
    mask_phone_numbers,
    setup_logging,
)
from .metrics import ChannelMetrics, Metrics

__all__ = ["ChannelMetrics", "LogfmtFormatter", "Metrics", "OpsServer", "Redactor",
           "RequestErrorLog", "SourceThrottle", "mask_phone_numbers", "setup_logging"]
