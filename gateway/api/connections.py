"""The API's connections and their limits, so that no client can take the listener.

``Connections`` is the listener's book: connections open in all (``[api] max_connections``)
and from each source address (``max_connections_per_source``, which a trusted proxy, carrying
many clients, is not held to); one more is aborted as soon as it is accepted, so that one
address cannot take every slot. ``GuardedConnection`` wraps
aiohttp's protocol for one connection and holds the client to deadlines:

- a request's line and headers within ``header_timeout`` of the connection's accept, or of the
  request's first byte on a kept-alive connection;
- its body within ``body_timeout`` of the end of its headers;
- the next request's first byte within ``idle_timeout`` of an answer.

A missed deadline aborts the connection without an answer: the client never finished asking.
While the gateway works on a request there is no deadline. A request only moves its
connection's deadline; one sweep of the open connections (``Connections.keep_deadlines``, every
quarter of the shortest timeout, at most every second) closes those past theirs, so that a
request costs no timer. What a client is refused for, and the deadlines it missed, are logged
once per address per minute (``SourceThrottle``), as are requests that do not parse
(``RequestErrorLog``), without their bytes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from aiohttp import StreamReader, web

from gateway.config import ApiSettings
from gateway.ops import RequestErrorLog, SourceThrottle

log = logging.getLogger("cmpp_gateway.api")
AIOHTTP_SERVER_LOG = logging.getLogger("aiohttp.server")

# What a connection waits for, the setting that bounds the wait (None: no bound), and what a
# client that misses it did not send.
HEAD, BODY, BUSY, IDLE = "head", "body", "busy", "idle"
DEADLINES = {HEAD: "header_timeout", BODY: "body_timeout", BUSY: None, IDLE: "idle_timeout"}
MISSED = {HEAD: "no request line and headers", BODY: "no whole body", IDLE: "no new request"}


class Connections:
    """The open connections, in all and per source address, and how many were admitted and
    refused since the start; ``admit`` refuses one over either limit, ``keep_deadlines``
    closes those past their deadline."""

    def __init__(self, settings: ApiSettings, throttle: SourceThrottle, proxies=None) -> None:
        self.settings, self.throttle = settings, throttle
        self.proxies = proxies              # TrustedProxies: not limited per source
        self.open = 0
        self.admitted = 0
        self.refused = 0
        self._by_source: dict[str, int] = {}
        self._guarded: set[GuardedConnection] = set()
        self.tick = min(1.0, min(settings.header_timeout, settings.body_timeout,
                                 settings.idle_timeout) / 4)

    def admit(self, connection: GuardedConnection) -> bool:
        """Count a new connection; False, counted as refused and noted in the log, when it
        would go over a limit."""
        source = connection.source
        from_source = self._by_source.get(source, 0)
        if self.open >= self.settings.max_connections:
            reason = f"{self.open} open in all (max_connections)"
        elif from_source >= self.settings.max_connections_per_source and not (
                self.proxies and self.proxies.trusts(source)):
            reason = f"{from_source} open from this address (max_connections_per_source)"
        else:
            self.open += 1
            self.admitted += 1
            self._by_source[source] = from_source + 1
            self._guarded.add(connection)
            return True
        self.refused += 1
        self.throttle.note(source, f"connection refused, {reason}")
        return False

    def release(self, connection: GuardedConnection) -> None:
        """A connection that ``admit`` counted has closed."""
        self._guarded.discard(connection)
        self.open -= 1
        left = self._by_source[connection.source] - 1
        if left:
            self._by_source[connection.source] = left
        else:
            del self._by_source[connection.source]

    async def keep_deadlines(self) -> None:
        """Every ``tick`` seconds until cancelled: close the connections past their
        deadline."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for connection in [c for c in self._guarded if c.deadline <= now]:
                connection.deadline_passed()


class GuardedConnection(asyncio.Protocol):
    """One API connection, admitted by ``book`` and held to its deadlines, with aiohttp's
    protocol inside (made by ``make_inner`` once admitted). The API's middleware tells it
    where a request is (``request_started``, ``request_answered``); the bytes it sees tell it
    when a new request begins."""

    def __init__(self, book: Connections, make_inner: Callable[[], web.RequestHandler]) -> None:
        self._book, self._make_inner = book, make_inner
        self._inner: web.RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.source = "-"
        self.deadline = math.inf                  # loop time by which the client must act
        self._state = HEAD
        self._body: StreamReader | None = None

    @classmethod
    def of(cls, request: web.BaseRequest) -> GuardedConnection | None:
        """The connection ``request`` came on, when an ``ApiServer`` serves it."""
        transport = request.transport
        protocol = transport.get_protocol() if transport is not None else None
        return protocol if isinstance(protocol, cls) else None

    # ------------------------------------------------------------------------ asyncio

    def connection_made(self, transport) -> None:
        self.source = _source(transport)
        if not self._book.admit(self):
            transport.abort()
            return
        self._transport = transport
        self._inner = self._make_inner()
        self._inner.logger = RequestErrorLog(AIOHTTP_SERVER_LOG, self._book.throttle,
                                             self.source)
        self._expect(HEAD)
        self._inner.connection_made(transport)

    def connection_lost(self, exc) -> None:
        if self._transport is None:
            return
        self._transport = None
        self._body = None
        self._book.release(self)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._state == IDLE:
            self._expect(HEAD)
        self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # ------------------------------------------------------------------------ requests

    def request_started(self, body: StreamReader) -> None:
        """A request's head has arrived: its ``body``, unless already whole, has
        ``body_timeout`` to follow."""
        if body.is_eof():
            self._expect(BUSY)
        else:
            self._body = body
            self._expect(BODY)

    def request_answered(self) -> None:
        """The answer is on its way: the next request has ``idle_timeout`` to begin."""
        self._body = None
        self._expect(IDLE)

    def deadline_passed(self) -> None:
        """The sweep found the deadline passed: close, unless the body came in time."""
        if self._transport is None:
            return
        if self._state == BODY and self._body is not None and self._body.is_eof():
            self._expect(BUSY)                  # it came; the handler has it
            return
        setting = DEADLINES[self._state]
        missed = f"{MISSED[self._state]} within {getattr(self._book.settings, setting):g} s " \
                 f"({setting})"
        if self._state == IDLE:                 # a client's pool keeping a spare: routine
            log.debug("API client %s: connection closed, %s", self.source, missed)
        else:
            self._book.throttle.note(self.source, f"connection closed, {missed}")
        self.deadline = math.inf
        self._transport.abort()

    def _expect(self, state: str) -> None:
        self._state = state
        setting = DEADLINES[state]
        self.deadline = math.inf if setting is None else \
            self._loop.time() + getattr(self._book.settings, setting)


def _source(transport) -> str:
    """The peer's address without its port ("-" when there is none, as on a Unix socket)."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "-"
