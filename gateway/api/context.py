"""What the API's handlers share: the ``Api`` context (the gateway, its apps, templates and
rules), the request keys it is found under, and reading a request's JSON body and
Idempotency-Key. The route modules (``messages``, ``codes``, ``templates_signs``) and the
application (``app``) all import from here, and nothing here imports them.
"""

from __future__ import annotations

import ipaddress
import json
import time

from aiohttp import web

from gateway.config import Config
from gateway.store import AcceptedRequest, ApiRequest, StoreUnavailable

from .errors import ApiError
from .registry import Registry
from .rules import MobileRule, References, SendRules

API_KEY = web.AppKey("api", object)
APP = web.RequestKey("app", object)         # the calling app (an AppConfig)


class Api:
    """What the handlers share: the gateway, the apps, the templates, the rules."""

    def __init__(self, gateway, config: Config, clock=time.time) -> None:
        self.gateway = gateway
        self.store = gateway.store
        self.config = config
        self.settings = config.api
        self.clock = clock
        self.apps_by_key = {app.app_key: app for app in config.apps.values()}
        self.networks = {name: [ipaddress.ip_network(w, strict=False) for w in app.whitelist]
                         for name, app in config.apps.items()}
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
        return _answer(accepted.response) if accepted.replayed else None

    async def submit(self, request: ApiRequest) -> web.Response:
        """Store the request and answer as it says; ApiError 50019 when the store cannot
        write (it logs that itself, once, and /readyz says so until it can again)."""
        try:
            accepted: AcceptedRequest = await self.gateway.accept_request(request)
        except StoreUnavailable:
            raise ApiError(50019, "the store cannot write; try again later") from None
        return _answer(accepted.response)


def _answer(response: tuple[int, str]) -> web.Response:
    status, body = response
    return web.Response(status=status, text=body, content_type="application/json")


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ApiError(50007, "Idempotency-Key must be 1 to 255 characters")
    return key


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
    raw = await request.read()
    if not raw.strip():
        raise ApiError(50003)
    if request.content_type != "application/json":
        raise ApiError(50017, "send application/json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(50007, "not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(50007, "expected a JSON object")
    return body
