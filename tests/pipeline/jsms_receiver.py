"""A JSMS callback receiver, written from JSMS's callback document (jsms-callbacks.md and the
"Callback Interface" page it summarises), not from the gateway's code: it imports nothing of
``gateway``. It is what an application written against JSMS runs:

- ``GET <url>?echostr=<8 characters>`` is the URL's verification: answer the string as the
  body (after ``fail_checks`` scripted failures: an HTTP 404, then a wrong string);
- ``POST <url>`` carries form parameters ``nonce``, ``timestamp`` (milliseconds),
  ``signature``, ``type`` and ``data``: the signature is recomputed from the app's own key and
  master secret, and ``data`` is parsed by ``type`` (SMS_REPORT: msgId, status, receiveTime,
  phone; SMS_REPLY: phone, replyTime, content). The first ``fail_posts`` POSTs are answered
  500; then 200.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

SHAPES = {"SMS_REPORT": {"msgId": str, "status": int, "receiveTime": int, "phone": str},
          "SMS_REPLY": {"phone": str, "replyTime": int, "content": str}}


def jsms_signature(app_key: str, master_secret: str, nonce: str, timestamp: str) -> str:
    """JSMS: sha1 of appKey={appKey}&appMasterSecret={appMasterSecret}&nonce=...&timestamp=..."""
    text = f"appKey={app_key}&appMasterSecret={master_secret}&nonce={nonce}&timestamp={timestamp}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class Callback:
    """One POST as the receiver understood it."""

    path: str
    type: str
    data: dict
    nonce: int
    timestamp: int
    signature_ok: bool
    answered: int
    received_at: float
    content_type: str
    headers: dict = field(default_factory=dict)


@dataclass
class Check:
    path: str
    echostr: str
    answered: str


class JsmsReceiver:
    """An app's JSMS callback endpoint on 127.0.0.1 (any path)."""

    def __init__(self, app_key: str, master_secret: str, fail_checks: int = 0,
                 fail_posts: int = 0) -> None:
        self.app_key, self.master_secret = app_key, master_secret
        self.fail_checks, self.fail_posts = fail_checks, fail_posts
        self.checks: list[Check] = []
        self.callbacks: list[Callback] = []
        self.problems: list[str] = []          # requests that broke the JSMS contract
        self.order: list[str] = []             # "GET /path" and "POST /path", as they came
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> JsmsReceiver:
        application = web.Application()
        application.router.add_get("/{path:.*}", self._check)
        application.router.add_post("/{path:.*}", self._callback)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}/{path}"

    @property
    def acknowledged(self) -> list[Callback]:
        return [c for c in self.callbacks if c.answered == 200]

    def of_type(self, kind: str) -> list[Callback]:
        return [c for c in self.acknowledged if c.type == kind]

    async def _check(self, request: web.Request) -> web.Response:
        echostr = request.query.get("echostr", "")
        failed = sum(c.answered != c.echostr for c in self.checks)
        self.order.append(f"GET {request.path}")
        if len(echostr) != 8:
            self.problems.append(f"echostr of {len(echostr)} characters")
        if failed < self.fail_checks:
            answer = "" if failed == 0 else echostr[::-1] + "x"
            self.checks.append(Check(request.path, echostr, answer))
            if failed == 0:
                return web.Response(status=404, text="not found")
            return web.Response(text=answer)
        self.checks.append(Check(request.path, echostr, echostr))
        return web.Response(text=echostr)

    async def _callback(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.order.append(f"POST {request.path}")
        nonce, timestamp = form.get("nonce", ""), form.get("timestamp", "")
        signature_ok = form.get("signature") == jsms_signature(
            self.app_key, self.master_secret, nonce, timestamp)
        kind = form.get("type", "")
        data = self._parse(kind, form.get("data", ""))
        answered = 500 if len(self.callbacks) < self.fail_posts else 200
        self.callbacks.append(Callback(
            request.path, kind, data, int(nonce), int(timestamp), signature_ok, answered,
            time.time(), request.headers.get("Content-Type", ""), dict(request.headers)))
        if abs(int(timestamp) / 1000 - time.time()) > 60:
            self.problems.append(f"timestamp {timestamp} is not the current time in ms")
        return web.Response(status=answered, text="ok" if answered == 200 else "busy")

    def _parse(self, kind: str, text: str) -> dict:
        data = json.loads(text)
        shape = SHAPES.get(kind)
        if shape is None:
            self.problems.append(f"unknown type {kind!r}")
            return data
        if set(data) != set(shape) or not all(isinstance(data[k], t) for k, t in shape.items()):
            self.problems.append(f"{kind} data {data!r} is not {shape}")
        return data
