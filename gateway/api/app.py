"""The HTTP API's application: authentication, whitelist, bodies, errors, and its server.

Every call carries HTTP Basic ``base64(appKey:masterSecret)`` (the app's current secret, or
the one it replaced while the grace period of a rotation in the console lasts): missing
400/50001, wrong 401/50002, an app switched off 403/50036, a source address outside the
app's whitelist 403/50035. Unknown paths are 404/50016, wrong methods 405/50018, JSON
endpoints take only ``application/json`` (415/50017), an empty body is 400/50003 and one that
is not a JSON object 403/50007, a body over ``[api] max_body`` 403/50007 (at once when its
Content-Length says so, and the connection is closed after the answer). Anything unexpected
is 500/50019, logged without the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

from aiohttp import web

from gateway.ops import SourceThrottle

from . import codes, messages, templates_signs, users
from .connections import Connections, GuardedConnection
from .context import API_KEY, APP, Api, max_body
from .errors import ApiError
from .forwarded import CLIENT, parse_ip

log = logging.getLogger("cmpp_gateway.api")
LINGER = 2.0


# ----------------------------------------------------------------------------- middlewares

@web.middleware
async def deadlines(request: web.Request, handler):
    """Tell the connection, when an ``ApiServer`` serves it, that this request's head has
    arrived (its body has ``body_timeout`` to follow) and that it was answered (the next
    request has ``idle_timeout`` to begin)."""
    connection = GuardedConnection.of(request)
    if connection is None:
        return await handler(request)
    connection.request_started(request.content)
    try:
        return await handler(request)
    finally:
        connection.request_answered()


@web.middleware
async def jsms_errors(request: web.Request, handler):
    """Map every failure to a JSMS error body with the documented HTTP status. Each request
    is logged at debug with its client's address (see ``forwarded``)."""
    api: Api = request.app[API_KEY]
    request[CLIENT] = api.proxies.client(request.remote,
                                         request.headers.getall("X-Forwarded-For", []))
    if request.content_length is not None and request.content_length > max_body(request):
        return _too_large(request, max_body(request))  # at once: do not wait for the body
    try:
        refused = getattr(request.match_info, "http_exception", None)
        if refused is not None:
            raise ApiError(50018 if refused.status == 405 else 50016)
        response = await handler(request)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %d (client %s)", request.method, request.path,
                      response.status, request[CLIENT])
        return response
    except ApiError as error:
        log.debug("%s %s: %d, JSMS %d (client %s)", request.method, request.path,
                  error.status, error.code, request[CLIENT])
        return error.response()
    except web.HTTPRequestEntityTooLarge:
        return _too_large(request, max_body(request))
    except (ConnectionError, web.RequestPayloadError) as error:
        # The client went away, or sent a body that does not end as it said: its fault, and
        # usually nobody is left to answer.
        log.debug("%s %s: the body could not be read (%s)", request.method, request.path,
                  type(error).__name__)
        return ApiError(50007, "the body could not be read").response()
    except web.HTTPException as error:
        code = {404: 50016, 405: 50018, 415: 50017}.get(error.status, 50007)
        return ApiError(code).response()
    except Exception:  # noqa: BLE001 - the caller gets 50019, the operator a log line
        log.exception("%s %s failed (client %s)", request.method, request.path,
                      request[CLIENT])
        return ApiError(50019).response()


@web.middleware
async def authenticate(request: web.Request, handler):
    """Find the app from HTTP Basic appKey:masterSecret and check where the call comes from."""
    api: Api = request.app[API_KEY]
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise ApiError(50001)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise ApiError(50002)
    try:
        key, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(50002) from None
    app = api.apps.by_key(key)
    if not sep or app is None or not api.apps.secret_matches(app, secret):
        raise ApiError(50002)
    if not app.enabled:
        raise ApiError(50036)
    networks = api.apps.networks(app.name)
    if networks and not _allowed(request[CLIENT], networks):
        raise ApiError(50035)
    request[APP] = app
    return await handler(request)


def _too_large(request: web.Request, limit: int) -> web.Response:
    """403/50007, and the connection closed after it: the rest of the body is not wanted."""
    log.debug("%s %s: body over %d bytes", request.method, request.path, limit)
    response = ApiError(50007, f"body larger than {limit} bytes").response()
    response.force_close()
    return response


def _allowed(client: str, networks) -> bool:
    address = parse_ip(client)
    return address is not None and any(address in network for network in networks)


def create_app(api: Api) -> web.Application:
    app = web.Application(middlewares=[deadlines, jsms_errors, authenticate],
                          client_max_size=api.settings.max_body)
    app[API_KEY] = api
    messages.add_routes(app)
    codes.add_routes(app)
    templates_signs.add_routes(app)
    users.add_routes(app)
    return app


class JsmsRequestHandler(web.RequestHandler):
    """aiohttp's protocol for one connection, answering a request that does not parse as
    HTTP (a header given twice, a malformed line) with a JSMS error instead of plain text:
    403/50007 (500/50019 for a fault of the server). aiohttp logs it first, through the
    connection's RequestErrorLog: one throttled line, no traceback."""

    def handle_error(self, request, status: int = 500, exc=None, message=None):
        super().handle_error(request, status, exc, message)     # logs; raises if answered
        error = ApiError(50019) if status >= 500 else \
            ApiError(50007, "the request is not well-formed HTTP")
        response = error.response()
        response.force_close()
        return response


class ApiServer:
    """The API on its own address, with its limits: body size (``max_body``: a larger
    Content-Length is refused before the body is read), request line and header sizes (8 KiB
    each), open connections in all and per source address, and the time a client may take to
    send a request or to begin the next one (``connections``)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.throttle = SourceThrottle(log, "API client")
        self.connections = Connections(api.settings, self.throttle, api.proxies)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None
        self._handler_options: dict = {}
        self.address: tuple[str, int] | None = None

    @property
    def open_connections(self) -> int:
        return self.connections.open

    @property
    def refused_connections(self) -> int:
        return self.connections.refused

    async def start(self, host: str, port: int) -> tuple[str, int]:
        settings = self.api.settings
        self._handler_options = dict(
            access_log=None, max_line_size=8190, max_field_size=8190,
            # aiohttp's own keep-alive timer only as a backstop: GuardedConnection decides.
            keepalive_timeout=2 * max(settings.header_timeout, settings.idle_timeout),
            # After refusing a request whose body was not read, read and drop what the client
            # still sends for up to LINGER s before closing, so that it gets the answer
            # rather than a reset.
            lingering_time=LINGER)
        self._runner = web.AppRunner(create_app(self.api), **self._handler_options)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host, port,
                                                backlog=min(settings.max_connections, 4096))
        self.address = self._server.sockets[0].getsockname()[:2]
        self._sweeper = loop.create_task(self.connections.keep_deadlines(),
                                         name="api-deadlines")
        return self.address

    def _protocol(self) -> asyncio.Protocol:
        """A connection, admitted and held to its deadlines, aiohttp's protocol inside."""
        return GuardedConnection(self.connections, self._request_handler)

    def _request_handler(self) -> web.RequestHandler:
        server = self._runner.server
        return JsmsRequestHandler(server, loop=asyncio.get_running_loop(),
                                  **self._handler_options)

    async def stop(self) -> None:
        """Stop accepting, close the open connections (a request in progress is answered
        first), and log the counts of clients' errors not logged yet."""
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.shutdown()
        if self._server is not None:
            # Since Python 3.12 this waits for the connections too: after shutdown() they are.
            await self._server.wait_closed()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        self.throttle.flush()
