"""The channel: one CMPP connection over asyncio, and a channel's pool of them.

``Connection`` is a thin asyncio Protocol around ``cmpp.session.Session``: bytes in, events
out, one coalesced write per loop iteration, one timer. ``ChannelPool`` keeps a channel's
``connections`` logged in (backoff on failure, a slow probe after a refusal that will not
heal), spreads SUBMITs over the connections with free window, paces them to the channel's
TPS and drains on close; ``slots`` keeps each of its connections logged in and reports them
(``ChannelStatus``), ``sends`` counts a SUBMIT's sends and resends (``Submitted``).
``pacing`` holds the backoff and the TPS limiter; ``errors`` the typed outcomes
(``SubmitRejectedError``, ``OutcomeUnknown``, ``SendsExhausted``, ``LoginRefused``, ...), and
``authenticator_mismatch``: a center's non-standard AuthenticatorISMG in an operator's words.

Offers: Connection, SessionProtocol, EventHandler, china_time, CHINA; ChannelPool,
ChannelPools, PoolTuning, PoolClosed, Submitted, ChannelStatus, ConnectionStatus,
session_config; Backoff, TpsLimiter, ShareLimiter (a pool's share of a TPS shared by
several gateways), DeadlineExceeded; and the errors.
"""

from .connection import CHINA, Connection, EventHandler, SessionProtocol, china_time
from .errors import (
    ConnectFailed,
    ConnectionClosed,
    GatewayError,
    LoginFailed,
    LoginRefused,
    LoginTimedOut,
    OutcomeUnknown,
    SendsExhausted,
    SubmitRejectedError,
    SubmitThrottledError,
    authenticator_mismatch,
)
from .pacing import Backoff, DeadlineExceeded, ShareLimiter, TpsLimiter
from .pool import ChannelPool, ChannelPools, PoolClosed, PoolTuning, session_config
from .sends import Submitted
from .slots import ChannelStatus, ConnectionStatus

__all__ = [
    "CHINA", "Backoff", "ChannelPool", "ChannelPools", "ChannelStatus", "ConnectFailed",
    "Connection", "ConnectionClosed", "ConnectionStatus", "DeadlineExceeded", "EventHandler",
    "GatewayError", "LoginFailed", "LoginRefused", "LoginTimedOut", "OutcomeUnknown",
    "PoolClosed", "PoolTuning", "SendsExhausted", "SessionProtocol", "ShareLimiter",
    "SubmitRejectedError",
    "SubmitThrottledError", "Submitted", "TpsLimiter", "authenticator_mismatch", "china_time",
    "session_config",
]
