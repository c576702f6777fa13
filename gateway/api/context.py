"""What the API's handlers share: the ``Api`` context (the gateway, its apps, templates and
rules), the request keys it is found under, and reading a request's JSON body and a
multipart part up to a limit. The route modules (``messages``, ``codes``,
``templates_signs``, ``users``), ``idempotency`` and the application (``app``) all import
from here, and nothing here imports them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Callable

from aiohttp import web

from gateway.config import ApiSettings, Config, callback_url_problem
from gateway.store import (
    KEY_REUSED,
    REPEATED,
    TOO_FAST,
    TOO_MANY_CODES,
    AcceptedRequest,
    ApiRequest,
    StoreUnavailable,
)

from .errors import ApiError
from .forwarded import TrustedProxies
from .registry import Registry
from .rules import MobileRule, Recorded, References, SendRules

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
        self.sending: dict[tuple[str, str], asyncio.Future] = {}   # keys being handled
        self.proxies = TrustedProxies(config.api.trusted_proxies)

    async def load(self) -> None:
        """Templates, signatures and unsubscribed numbers kept in the store."""
        self.registry.load(await self.store.templates(), await self.store.signatures())
        self.rules.unsubscribed = await self.store.unsubscribed()

    async def replay(self, app, key) -> web.Response | None:
        """The first answer given to this Idempotency-Key (an ``idempotency.Key``), if there
        was one; ApiError 50007 when the key was given with another request."""
        accepted = await self.store.accept_request(
            ApiRequest(app.name, idempotency_key=key.value, fingerprint=key.fingerprint), 0)
        _refused(accepted)
        return answer(accepted) if accepted.replayed else None

    async def submit(self, request: ApiRequest, recorded: Recorded | None = None
                     ) -> web.Response:
        return answer(await self.accept(request, recorded))

    async def accept(self, request: ApiRequest, recorded: Recorded | None = None
                     ) -> AcceptedRequest:
        """Store the request whole (durable when this returns) and wake its dispatchers.
        When the store keeps no new send (it fails, replays the answer of the request's key,
        or refuses), what ``recorded`` counted against the rules is taken back. ApiError
        50007 (the key came with another request), 50009 (the number got its codes, or with
        several gateways on the store, the app's messages_per_app_per_second among them), or
        50019 when the store cannot write (it logs that itself, once, and /readyz says so
        until it can again); Repeated (50034) when, with several gateways on the store,
        another gateway's request holds one of its repeat keys (that gateway remembered a send
        this one did not see)."""
        request = self._shared_limits(request, recorded)
        try:
            accepted = await self.gateway.accept_request(request)
        except BaseException as error:
            if recorded is not None:
                self.rules.forget(recorded)
            if isinstance(error, StoreUnavailable):
                raise ApiError(50019, "the store cannot write; try again later") from None
            raise
        if recorded is not None and (accepted.replayed or accepted.refusal):
            self.rules.forget(recorded)
        if accepted.refusal == REPEATED:
            self.rules.seen_elsewhere([k for k in recorded.repeat_keys
                                       if str(k) in accepted.repeated])
            raise Repeated(accepted.repeated)
        _refused(accepted)
        return accepted

    def _shared_limits(self, request: ApiRequest, recorded: Recorded | None) -> ApiRequest:
        """A shared store holds the repeat rule's keys and counts the app's messages per
        second too, so that both hold across gateways (this gateway's memory has counted
        only its own)."""
        if recorded is None or not self.gateway.store.shared:
            return request
        limits = {}
        if recorded.repeat_keys:
            limits.update(repeats=tuple(map(str, recorded.repeat_keys)),
                          repeat_until=recorded.at + self.rules.repeats.window)
        if recorded.app is not None:
            limits.update(app_second_limit=self.settings.messages_per_app_per_second)
        return dataclasses.replace(request, **limits) if limits else request

    def review_changed(self) -> None:
        """A review was decided elsewhere (the console): read the statuses again now rather
        than at the next poll."""
        self.reviewed.set()


class Repeated(ApiError):
    """50034 found by the store: ``keys`` (repeat keys, as the store holds them) were sent
    through another gateway within the repeat window."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        super().__init__(50034)
        self.keys = keys


def _refused(accepted: AcceptedRequest) -> None:
    if accepted.refusal == KEY_REUSED:
        raise ApiError(50007, "the Idempotency-Key was given with another request (another "
                              "body or endpoint); use a new key for a new request")
    if accepted.refusal == TOO_MANY_CODES:
        raise ApiError(50009, "too many codes to this number")
    if accepted.refusal == TOO_FAST:
        raise ApiError(50009, "too many messages from this app")


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


def request_urgent(body: dict, template) -> bool:
    """Whether the send request marks its messages urgent (``urgent``, gateway): they then go
    ahead of notifications and marketing, as verification codes do. ApiError 50007 when it is
    not true or false (null: not given), or marks a marketing template's messages urgent."""
    urgent = body.get("urgent")
    if urgent is None or urgent is False:
        return False
    if urgent is not True:
        raise ApiError(50007, "urgent must be true or false")
    if template.type == "marketing":
        raise ApiError(50007, "a marketing message cannot be urgent")
    return True


async def json_body(request: web.Request) -> dict:
    """The request's JSON object; ApiError 50003, 50017 or 50007."""
    body = await json_value(request)
    if not isinstance(body, dict):
        raise ApiError(50007, "expected a JSON object")
    return body


MAX_DEPTH = 32                                  # JSMS's bodies are 4 deep at most
_CONTAINERS = (dict, list)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")    # \\uD800-\\uDFFF: half of a pair
_SURROGATE = re.compile("[\ud800-\udfff]")


async def json_value(request: web.Request):
    """The request's JSON, whatever its type; ApiError 50003 (no body), 50017 (not
    application/json) or 50007 (not UTF-8 JSON, NaN or Infinity, nested deeper than
    MAX_DEPTH, or a string with a lone UTF-16 surrogate, which no text can carry)."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(50003)
    if request.content_type != "application/json":
        raise ApiError(50017, "send application/json")
    try:
        text = raw.decode("utf-8")              # strict: no encoded surrogate gets through
        value = json.loads(text, parse_constant=_not_json)
    except ValueError:
        raise ApiError(50007, "not JSON in UTF-8") from None
    except RecursionError:                      # nested past Python's stack
        raise ApiError(50007, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    containers = text.count("[") + text.count("{")      # at least as many as there are
    if containers > MAX_DEPTH:
        _check_depth(value, containers)
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value)
    return value


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _check_depth(value, containers: int) -> None:
    """ApiError 50007 when ``value`` nests deeper than MAX_DEPTH (level by level: no
    recursion, one pass over the containers). ``containers``: at least how many it holds;
    once those not yet seen could not make MAX_DEPTH levels more, the pass stops (a batch's
    recipients' ``temp_para`` are not looked into)."""
    level, depth = [value] if isinstance(value, _CONTAINERS) else [], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise ApiError(50007, f"JSON nested deeper than {MAX_DEPTH} levels")
        containers -= len(level)
        if depth + containers <= MAX_DEPTH:
            return
        level = [v for item in level for v in (item.values() if type(item) is dict else item)
                 if isinstance(v, _CONTAINERS)]


def _check_surrogates(value) -> None:
    """ApiError 50007 when a string of ``value``, or a key, holds a lone surrogate (a pair's
    two escapes make one character; one alone is no text, and cannot be stored or sent)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ApiError(50007, "a string holds a lone UTF-16 surrogate")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


async def read_limited(part, limit: int) -> bytes | None:
    """A multipart part's content, or None as soon as it grows over ``limit`` bytes."""
    content = bytearray()
    while chunk := await part.read_chunk(64 << 10):
        content += chunk
        if len(content) > limit:
            return None
    return bytes(content)
