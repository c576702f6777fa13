"""What the API's handlers share: the ``Api`` context (the gateway, its apps, templates and
rules), the request keys it is found under, and reading a request's JSON body, a multipart
part up to a limit, and the Idempotency-Key. The route modules (``messages``, ``codes``,
``templates_signs``, ``users``) and the application (``app``) all import from here, and
nothing here imports them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from aiohttp import web

from gateway.config import ApiSettings, Config, callback_url_problem
from gateway.store import AcceptedRequest, ApiRequest

from .errors import ApiError
from .registry import Registry
from .rules import MobileRule, References, SendRules

API_KEY = web.AppKey("api", object)
APP = web.RequestKey("app", object)         # the calling app (an AppConfig)


class Api:
    """What the handlers share: the gateway, the apps, the templates, the rules. ``apps`` is
    the gateway's AppDirectory (the configuration's apps and those made in the console)."""

    def __init__(self, gateway, config: Config, clock=time.time) -> None:
        self.gateway = gateway
        self.store = gateway.store
        self.config = config
        self.settings = config.api
        self.clock = clock
        self.apps = gateway.apps
        self.reviewed = asyncio.Event()         # set: read the review statuses again now
        self.registry = Registry(config.templates)
        self.rules = SendRules(config.api, clock)
        self.mobiles = MobileRule(config.api.mobile_pattern)
        self.references = References()

    async def load(self) -> None:
        """Templates, signatures and unsubscribed numbers kept in the store."""
        self.registry.load(await self.store.templates(), await self.store.signatures())
        self.rules.unsubscribed = await self.store.unsubscribed()

    async def replay(self, app, key: str | None) -> web.Response | None:
        """The first answer given to this Idempotency-Key, if there was one."""
        if key is None:
            return None
        accepted = await self.store.accept_request(ApiRequest(app.name, idempotency_key=key), 0)
        return answer(accepted) if accepted.replayed else None

    async def submit(self, request: ApiRequest) -> web.Response:
        return answer(await self.accept(request))

    async def accept(self, request: ApiRequest) -> AcceptedRequest:
        """Store the request whole (durable when this returns) and wake its dispatchers."""
        return await self.gateway.accept_request(request)

    def review_changed(self) -> None:
        """A review was decided elsewhere (the console): read the statuses again now rather
        than at the next poll."""
        self.reviewed.set()


def answer(accepted: AcceptedRequest) -> web.Response:
    """The answer kept with an accepted request, as an HTTP response."""
    status, body = accepted.response
    return web.Response(status=status, text=body, content_type="application/json")


def body_limit(limit: int | Callable[[ApiSettings], int]):
    """Marks a handler whose body is bounded by ``limit`` bytes, or by what ``limit`` makes of
    the [api] settings, instead of ``[api] max_body`` (a form whose parts have limits of their
    own). A Content-Length over it is refused before the body is read."""
    def mark(handler):
        handler.max_body = limit
        return handler
    return mark


def max_body(request: web.Request) -> int:
    """The most bytes of body that ``request``'s handler takes."""
    settings = request.app[API_KEY].settings
    limit = getattr(request.match_info.handler, "max_body", None)
    if limit is None:
        return settings.max_body
    return limit(settings) if callable(limit) else limit


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ApiError(50007, "Idempotency-Key must be 1 to 255 characters")
    return key


def request_callback(body: dict) -> str | None:
    """The send request's own status callback URL (``callback``, seed 004), which replaces the
    app's for its messages; None when it gives none. ApiError 50007 when it is not an http://
    or https:// URL."""
    url = body.get("callback")
    if url is None or url == "":
        return None
    if not isinstance(url, str) or callback_url_problem(url):
        raise ApiError(50007, "callback must be an http:// or https:// URL of at most 1024 "
                              "characters")
    return url


async def start_send(request: web.Request):
    """What every send begins with: the API, the caller's app, the JSON body and the
    Idempotency-Key, and the first answer when that key was seen before (else None).
    ApiError as ``json_body`` and ``idempotency_key`` raise it."""
    api: Api = request.app[API_KEY]
    body = await json_body(request)
    key = idempotency_key(request)
    return api, request[APP], body, key, await api.replay(request[APP], key)


async def json_body(request: web.Request) -> dict:
    """The request's JSON object; ApiError 50003, 50017 or 50007."""
    body = await json_value(request)
    if not isinstance(body, dict):
        raise ApiError(50007, "expected a JSON object")
    return body


async def json_value(request: web.Request):
    """The request's JSON, whatever its type; ApiError 50003 (no body), 50017 (not
    application/json) or 50007 (not JSON)."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(50003)
    if request.content_type != "application/json":
        raise ApiError(50017, "send application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(50007, "not JSON") from None


async def read_limited(part, limit: int) -> bytes | None:
    """A multipart part's content, or None as soon as it grows over ``limit`` bytes."""
    content = bytearray()
    while chunk := await part.read_chunk(64 << 10):
        content += chunk
        if len(content) > limit:
            return None
    return bytes(content)
