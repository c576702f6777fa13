"""The HTTP API's application: authentication, whitelist, bodies, errors, and its server.

Every call carries HTTP Basic ``base64(appKey:masterSecret)`` (the app's current secret, or
the one it replaced while the grace period of a rotation in the console lasts): missing
400/50001, wrong 401/50002, an app switched off 403/50036, a source address outside the
app's whitelist 403/50035. Unknown paths are 404/50016, wrong methods 405/50018, JSON endpoints take only
``application/json`` (415/50017), an empty body is 400/50003 and one that is not a JSON object
403/50007, a body over ``[api] max_body`` 403/50007. Anything unexpected is 500/50019, logged
without the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging

from aiohttp import web

from . import codes, messages, templates_signs, users
from .context import API_KEY, APP, Api
from .errors import ApiError

log = logging.getLogger("cmpp_gateway.api")


# ----------------------------------------------------------------------------- middlewares

@web.middleware
async def jsms_errors(request: web.Request, handler):
    """Map every failure to a JSMS error body with the documented HTTP status."""
    try:
        refused = getattr(request.match_info, "http_exception", None)
        if refused is not None:
            raise ApiError(50018 if refused.status == 405 else 50016)
        response = await handler(request)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %d", request.method, request.path, response.status)
        return response
    except ApiError as error:
        log.debug("%s %s: %d, JSMS %d", request.method, request.path, error.status, error.code)
        return error.response()
    except web.HTTPRequestEntityTooLarge:
        max_body = request.app[API_KEY].settings.max_body
        return ApiError(50007, f"body larger than {max_body} bytes").response()
    except web.HTTPException as error:
        code = {404: 50016, 405: 50018, 415: 50017}.get(error.status, 50007)
        return ApiError(code).response()
    except Exception:  # noqa: BLE001 - the caller gets 50019, the operator a log line
        log.exception("%s %s failed", request.method, request.path)
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
    if networks and not _allowed(request.remote, networks):
        raise ApiError(50035)
    request[APP] = app
    return await handler(request)


def _allowed(remote: str | None, networks) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def create_app(api: Api) -> web.Application:
    app = web.Application(middlewares=[jsms_errors, authenticate],
                          client_max_size=api.settings.max_body)
    app[API_KEY] = api
    messages.add_routes(app)
    codes.add_routes(app)
    templates_signs.add_routes(app)
    users.add_routes(app)
    return app


class _CountedProtocol(asyncio.Protocol):
    """Delegates to aiohttp's request handler; counts the connection against the limit and
    aborts it at once when the limit is already reached."""

    def __init__(self, server: "ApiServer", inner: asyncio.Protocol) -> None:
        self._server, self._inner = server, inner
        self._counted = False

    def connection_made(self, transport) -> None:
        server = self._server
        if server.open_connections >= server.api.settings.max_connections:
            server.refused_connections += 1
            transport.abort()
            return
        server.open_connections += 1
        self._counted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc) -> None:
        if self._counted:
            self._counted = False
            self._server.open_connections -= 1
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ApiServer:
    """The API on its own address, with its limits: body size (``max_body``), request line
    and header sizes (8 KiB each), and open connections (``max_connections``: one more is
    closed as soon as it is accepted)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        self.open_connections = 0
        self.refused_connections = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._runner = web.AppRunner(create_app(self.api), access_log=None,
                                     max_line_size=8190, max_field_size=8190)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host, port,
                                                backlog=min(self.api.settings.max_connections,
                                                            4096))
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    def _protocol(self) -> asyncio.Protocol:
        """aiohttp's protocol for one connection, counted; over the limit it is closed."""
        return _CountedProtocol(self, self._runner.server())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
            self._runner = None
