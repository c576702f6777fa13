"""JSMS's callback format, as receivers written against JSMS expect it (jsms-callbacks.md).

Before a URL is used it must pass JSMS's check: a GET with an 8-character random ``echostr``
query parameter, answered 2xx with exactly that string as the body (surrounding whitespace,
such as a final newline, is ignored; a redirect is a failure). ``UrlVerifier`` keeps which URLs
passed: the apps' URLs are checked when it starts (so at every start and reload, and so after
any change of URL), a request's own URL when its first callback is due; a URL that failed is
checked again every ``[api] callback_verify_interval`` seconds, and its callbacks wait.

Each callback is then a POST, ``application/x-www-form-urlencoded; charset=UTF-8``, of::

    nonce      a random long integer
    timestamp  the current time in milliseconds
    signature  hex SHA-1 of appKey={appKey}&appMasterSecret={masterSecret}&nonce=...&timestamp=...
    type       SMS_REPORT (a message's final status) or SMS_REPLY (an MO reply)
    data       JSON: {"msgId", "status", "receiveTime", "phone"} for SMS_REPORT,
               {"phone", "replyTime", "content"} for SMS_REPLY (times in milliseconds)

``status`` is the JSMS code (4001-4100) the provider's receipt-code table gives the message's
status and deciding Stat (``ReceiptCodes.jsms_status``). Phone numbers are national (no +86).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import string
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import yarl

from gateway.config import AppConfig
from gateway.ops import Metrics
from gateway.store import MessageView, MoView

log = logging.getLogger("cmpp_gateway.callbacks")

SMS_REPORT, SMS_REPLY = "SMS_REPORT", "SMS_REPLY"
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
ECHOSTR_LENGTH = 8
ECHOSTR_ALPHABET = string.ascii_letters + string.digits
MAX_ECHO_BODY = 1024        # bytes of a verification answer read at most


# ----------------------------------------------------------------------------- the POSTs

def signature(app_key: str, master_secret: str, nonce: int, timestamp: int) -> str:
    """The ``signature`` field: hex SHA-1 of the app key, master secret, nonce and timestamp
    in JSMS's order."""
    text = (f"appKey={app_key}&appMasterSecret={master_secret}&nonce={nonce}"
            f"&timestamp={timestamp}")
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def form(app: AppConfig, kind: str, data: dict, now: float, nonce: int | None = None) -> bytes:
    """The body of one POST: ``kind`` (SMS_REPORT or SMS_REPLY) and its ``data``, signed for
    ``app`` at ``now`` (unix seconds). A fresh nonce each call unless one is given."""
    timestamp = milliseconds(now)
    nonce = secrets.randbits(63) if nonce is None else nonce
    fields = {"nonce": nonce, "timestamp": timestamp,
              "signature": signature(app.app_key, app.master_secret, nonce, timestamp),
              "type": kind,
              "data": json.dumps(data, ensure_ascii=False, separators=(",", ":"))}
    return urllib.parse.urlencode(fields).encode("ascii")


def report_data(view: MessageView, status: int) -> dict:
    """SMS_REPORT's data for a message that ended with JSMS status code ``status``;
    ``receiveTime`` is when its final status came."""
    return {"msgId": str(view.id), "status": status,
            "receiveTime": milliseconds(view.status_at or view.created_at),
            "phone": national_number(view.recipient)}


def reply_data(view: MoView) -> dict | None:
    """SMS_REPLY's data for an MO; None for a binary one (it has no text to carry)."""
    if view.text is None:
        return None
    return {"phone": national_number(view.src_terminal_id),
            "replyTime": milliseconds(view.received_at), "content": view.text}


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


def national_number(mobile: str) -> str:
    """A mainland mobile number without ``+86`` or ``86`` in front, as JSMS writes phones;
    anything else as it is."""
    digits = mobile.lstrip("+")
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else mobile


# ----------------------------------------------------------------------------- verification

@dataclass(frozen=True)
class UrlCheck:
    """The last echostr check of one URL: passed, or why not; when to check a failed one
    again."""

    verified: bool
    error: str | None
    checked_at: float
    next_check: float


class UrlVerifier:
    """Which callback URLs passed JSMS's echostr check; one check of a URL at a time.

    ``check(url)`` answers at once for a URL that passed, or that failed less than
    ``interval`` seconds ago; otherwise it checks (callers of the same URL share one check).
    The apps' own URLs (``watch``) are checked at ``start`` and, while they fail, again every
    ``interval`` seconds; each is reported in the log when it fails or passes again, in
    ``unverified()`` (for /readyz) and in ``cmpp_callback_url_verified``. Results for at most
    ``LIMIT`` other URLs (a request's own) are kept, the least recently used dropped first.
    """

    LIMIT = 10_000

    def __init__(self, session: Callable[[], aiohttp.ClientSession], timeout: float,
                 interval: float, metrics: Metrics, clock: Callable[[], float] = time.time,
                 on_passed: Callable[[], None] = lambda: None) -> None:
        self._session, self.interval, self.metrics = session, interval, metrics
        self.clock, self.on_passed = clock, on_passed
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._checks: OrderedDict[str, UrlCheck] = OrderedDict()
        self._running: dict[str, asyncio.Task] = {}
        self._owners: dict[str, list[tuple[str, str]]] = {}   # an app's URL -> (app, kind)
        self._task: asyncio.Task | None = None

    def watch(self, apps: Mapping[str, AppConfig]) -> None:
        """Take the URLs of the apps whose callback format is jsms as the ones to report,
        instead of those watched before (the apps changed); once started, a URL not checked
        yet is checked at once."""
        owners: dict[str, list[tuple[str, str]]] = {}
        for name, app in apps.items():
            if app.callback_format != "jsms":
                continue
            for kind, url in (("status", app.status_callback), ("mo", app.mo_callback)):
                if url:
                    owners.setdefault(url, []).append((name, kind))
        self._owners = owners
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.start()

    def start(self) -> None:
        """Check the apps' URLs now, and the failed ones again every ``interval``."""
        if self._task is None and self._owners:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="callback-urls")

    async def close(self) -> None:
        """Stop the rechecks and cancel the checks in flight (their callers are cancelled
        with them: the sender closes first)."""
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._running.clear()

    def state(self, url: str) -> UrlCheck | None:
        return self._checks.get(url)

    async def check(self, url: str) -> bool:
        """True when ``url`` passed its echostr check; checks it first when it never was or
        its last failure is ``interval`` old. Never raises but CancelledError."""
        known = self._checks.get(url)
        if known is not None and (known.verified or self.clock() < known.next_check):
            self._checks.move_to_end(url)
            return known.verified
        task = self._running.get(url)
        if task is None:
            task = self._running[url] = asyncio.get_running_loop().create_task(
                self._verify(url), name="callback-url-check")
            task.add_done_callback(lambda _, url=url: self._running.pop(url, None))
        return await asyncio.shield(task)

    def unverified(self) -> list[dict]:
        """The apps' URLs that have not passed (yet), for /readyz."""
        out = []
        for url, owners in self._owners.items():
            known = self._checks.get(url)
            if known is None or not known.verified:
                out += [{"app": app, "kind": kind, "url": url,
                         "error": known.error if known else "not checked yet",
                         "checked_at": known.checked_at if known else None}
                        for app, kind in owners]
        return out

    # ------------------------------------------------------------------------- the work

    async def _run(self) -> None:
        while True:
            due = [url for url in self._owners if self._due(url)]
            results = await asyncio.gather(*(self.check(url) for url in due))
            if any(results):
                self.on_passed()
            await asyncio.sleep(self._until_next())

    def _due(self, url: str) -> bool:
        known = self._checks.get(url)
        return known is None or (not known.verified and self.clock() >= known.next_check)

    def _until_next(self) -> float:
        waits = [c.next_check - self.clock() for url in self._owners
                 if (c := self._checks.get(url)) is not None and not c.verified]
        return min([self.interval, *waits]) if waits else self.interval

    async def _verify(self, url: str) -> bool:
        started = self.clock()
        error = await self._ask(url, "".join(secrets.choice(ECHOSTR_ALPHABET)
                                             for _ in range(ECHOSTR_LENGTH)))
        before = self._checks.pop(url, None)
        # The next check is an interval after this one ended, however long it took.
        self._checks[url] = UrlCheck(error is None, error, started, self.clock() + self.interval)
        self._forget_least_used()
        self.metrics.callback_verifications.labels("passed" if error is None else "failed").inc()
        for app, kind in self._owners.get(url, ()):
            self.metrics.callback_url_verified.labels(app, kind).set(int(error is None))
        self._log(url, before, error)
        return error is None

    async def _ask(self, url: str, echostr: str) -> str | None:
        """None when ``url`` answers the check, else why not in words without content."""
        try:
            target = yarl.URL(url).update_query(echostr=echostr)
            async with self._session().get(target, timeout=self._timeout,
                                           allow_redirects=False) as response:
                if not 200 <= response.status < 300:
                    return f"HTTP {response.status}"
                body = await response.content.read(MAX_ECHO_BODY)
                return None if body.strip() == echostr.encode("ascii") else "wrong echostr"
        except asyncio.TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, ValueError, OSError) as error:
            return type(error).__name__

    def _forget_least_used(self) -> None:
        while len(self._checks) > self.LIMIT:
            oldest = next((url for url in self._checks if url not in self._owners), None)
            if oldest is None:
                return
            del self._checks[oldest]

    def _log(self, url: str, before: UrlCheck | None, error: str | None) -> None:
        """A failure when the URL was not failing already, a pass after a failure."""
        owners = self._owners.get(url)
        whose = ", ".join(f"app {app} {kind}_callback" for app, kind in owners) if owners \
            else "a request's own callback"
        if error is not None and (before is None or before.verified):
            log.log(logging.WARNING if owners else logging.INFO,
                    "callback URL %s (%s) failed its echostr check: %s; its callbacks wait, "
                    "checked again every %g s", shown(url), whose, error, self.interval)
        elif error is None and before is not None and not before.verified:
            log.info("callback URL %s (%s) passed its echostr check; its callbacks go out",
                     shown(url), whose)


def shown(url: str) -> str:
    """A URL for the log: scheme, host, port and path, without credentials or query (they
    may hold tokens), non-ASCII escaped."""
    with contextlib.suppress(ValueError):
        parts = urllib.parse.urlsplit(url)
        url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return url.encode("ascii", "backslashreplace").decode("ascii")
