"""The API's connections and their limits, so that no client can take the listener.

``Connections`` is the listener's book: connections open in all (``[api] max_connections``)
and from each source address (``max_connections_per_source``); one more is aborted as soon as
it is accepted, so that one address cannot take every slot. ``GuardedConnection`` wraps
aiohttp's protocol for one connection and holds the client to deadlines:

- a request's line and headers within ``header_timeout`` of the connection's accept, or of the
  request's first byte on a kept-alive connection;
- its body within ``body_timeout`` of the end of its headers;
- the next request's first byte within ``idle_timeout`` of an answer.

A missed deadline aborts the connection without an answer: the client never finished asking.
While the gateway works on a request there is no deadline. What a client is refused for, and
the deadlines it missed, are logged once per address per minute (``SourceThrottle``), as are
requests that do not parse (``RequestErrorLog``), without their bytes.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import StreamReader, web

from gateway.config import ApiSettings
from gateway.ops import RequestErrorLog, SourceThrottle

log = logging.getLogger("cmpp_gateway.api")
AIOHTTP_SERVER_LOG = logging.getLogger("aiohttp.server")

# What a connection waits for, and the deadline that bounds the wait (None: no deadline).
HEAD, BODY, BUSY, IDLE = "head", "body", "busy", "idle"
DEADLINES = {HEAD: "header_timeout", BODY: "body_timeout", BUSY: None, IDLE: "idle_timeout"}
MISSED = {HEAD: "no request line and headers", BODY: "no whole body",
          IDLE: "no new request"}


class Connections:
    """How many connections are open, in all and per source address, and how many were
    admitted and refused since the start; ``admit`` refuses one over either limit."""

    def __init__(self, settings: ApiSettings, throttle: SourceThrottle) -> None:
        self.settings, self.throttle = settings, throttle
        self.open = 0
        self.admitted = 0
        self.refused = 0
        self._by_source: dict[str, int] = {}

    def admit(self, source: str) -> bool:
        """Count a new connection from ``source``; False, counted as refused and noted in the
        log, when it would go over a limit."""
        from_source = self._by_source.get(source, 0)
        if self.open >= self.settings.max_connections:
            reason = f"{self.open} open in all (max_connections)"
        elif from_source >= self.settings.max_connections_per_source:
            reason = f"{from_source} open from this address (max_connections_per_source)"
        else:
            self.open += 1
            self.admitted += 1
            self._by_source[source] = from_source + 1
            return True
        self.refused += 1
        self.throttle.note(source, f"connection refused, {reason}")
        return False

    def release(self, source: str) -> None:
        """A connection that ``admit`` counted has closed."""
        self.open -= 1
        left = self._by_source[source] - 1
        if left:
            self._by_source[source] = left
        else:
            del self._by_source[source]


class GuardedConnection(asyncio.Protocol):
    """One API connection: aiohttp's protocol inside, admitted by ``book`` and held to its
    deadlines. The API's middleware tells it where a request is (``request_started``,
    ``request_answered``); the bytes it sees tell it when a new request begins."""

    def __init__(self, book: Connections, inner: web.RequestHandler) -> None:
        self._book, self._inner = book, inner
        self._transport: asyncio.Transport | None = None
        self._source = "-"
        self._state = HEAD
        self._body: StreamReader | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, request: web.BaseRequest) -> GuardedConnection | None:
        """The connection ``request`` came on, when an ``ApiServer`` serves it."""
        transport = request.transport
        protocol = transport.get_protocol() if transport is not None else None
        return protocol if isinstance(protocol, cls) else None

    # ------------------------------------------------------------------------ asyncio

    def connection_made(self, transport) -> None:
        self._source = _source(transport)
        if not self._book.admit(self._source):
            transport.abort()
            return
        self._transport = transport
        self._inner.logger = RequestErrorLog(AIOHTTP_SERVER_LOG, self._book.throttle,
                                             self._source)
        self._expect(HEAD)
        self._inner.connection_made(transport)

    def connection_lost(self, exc) -> None:
        if self._transport is None:
            return
        self._transport = None
        self._stop_timer()
        self._body = None
        self._book.release(self._source)
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

    def _expect(self, state: str) -> None:
        if self._transport is None:
            return
        self._state = state
        self._stop_timer()
        setting = DEADLINES[state]
        if setting is not None:
            self._timer = asyncio.get_running_loop().call_later(
                getattr(self._book.settings, setting), self._expired)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        if self._state == BODY and self._body is not None and self._body.is_eof():
            self._state = BUSY                 # it came in time; the handler has it
            return
        setting = DEADLINES[self._state]
        missed = f"{MISSED[self._state]} within {getattr(self._book.settings, setting):g} s " \
                 f"({setting})"
        if self._state == IDLE:                # a client's pool keeping a spare: routine
            log.debug("API client %s: connection closed, %s", self._source, missed)
        else:
            self._book.throttle.note(self._source, f"connection closed, {missed}")
        self._transport.abort()


def _source(transport) -> str:
    """The peer's address without its port ("-" when there is none, as on a Unix socket)."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "-"
