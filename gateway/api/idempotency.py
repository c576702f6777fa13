"""``Idempotency-Key``: a retried send gets the first answer, and nothing is sent twice.

A key is the app's (another app's same key is another key), and it names one request: its
endpoint and its body, kept with the key as a fingerprint (SHA-256 of the method, the path
and the body as canonical JSON, so that a retry serialised with its keys in another order is
the same request). With a key:

- the same request again gets the first answer, and nothing is stored or sent;
- another request (another body, or another endpoint) gets 403/50007, and nothing either;
- a request whose key is still being handled waits for the first, then answers as above (or
  goes on as a new request when the first stored nothing, being refused).

Within one gateway the wait is here (``Api.sending``, the keys being handled); the store
decides in the transaction that keeps the answer (``ApiRequest.fingerprint``), which is what
holds between gateways sharing one store. How long a key is kept is the store's.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from typing import NamedTuple

from aiohttp import web

from .context import API_KEY, APP, json_body
from .errors import ApiError


class Key(NamedTuple):
    value: str
    fingerprint: str


def read_key(request: web.Request, body) -> Key | None:
    """The request's Idempotency-Key with its fingerprint; None without one. ApiError 50007
    for a key that is not 1 to 255 printable ASCII characters (a header's bytes beyond ASCII
    reach us as undecodable surrogates, which no store can keep)."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not (1 <= len(value) <= 255 and value.isascii() and value.isprintable()):
        raise ApiError(50007, "Idempotency-Key must be 1 to 255 printable ASCII characters")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))   # ASCII: escapes all
    digest = hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode())
    return Key(value, digest.hexdigest())


def idempotent(send):
    """A send handler ``send(api, app, body, key)`` as an aiohttp handler that reads the JSON
    body and the Idempotency-Key, answers a key seen before itself, and makes a request whose
    key is being handled wait for the first (see the module)."""
    @functools.wraps(send)
    async def handler(request: web.Request) -> web.Response:
        api, app = request.app[API_KEY], request[APP]
        body = await json_body(request)
        key = read_key(request, body)
        if key is None:
            return await send(api, app, body, None)
        scope = (app.name, key.value)
        while (first := api.sending.get(scope)) is not None:
            await asyncio.shield(first)
        done = asyncio.get_running_loop().create_future()
        api.sending[scope] = done
        try:
            replayed = await api.replay(app, key)
            return replayed if replayed is not None else await send(api, app, body, key)
        finally:
            del api.sending[scope]
            done.set_result(None)
    return handler
