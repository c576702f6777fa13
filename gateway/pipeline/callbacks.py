"""Delivery-status and MO callbacks to each app's URLs, retried until acknowledged.

The store queues one outbox entry per event and app (a message turned final, an MO was
stored); ``CallbackSender`` POSTs each one to the message's own callback URL (given with its
send request) or the app's ``status_callback``, or to the app's ``mo_callback``, and records
the outcome in the store, so pending callbacks survive a restart. Any 2xx answer acknowledges
a callback, and it is not sent again. Anything else (another status, redirects included, a
refused or dropped connection, no answer within ``callback_timeout``) is tried again after
the waits of the app's ``callback_retries`` (by default JSMS's 3 min, 1 h, 12 h for the jsms
format), or, for signed-json without a schedule, with capped, jittered exponential backoff for
``callback_retry_for`` seconds after the event; then it is given up with a warning. An entry
whose app, URL, message or MO no longer exists is dropped.

An app's ``callback_format`` says what is sent. "jsms" is JSMS's own format (``jsms``): the
URL must first pass its echostr check; until it does, its callbacks are held in the outbox
(no attempt counted) and given up only ``callback_retry_for`` seconds after the event.
"signed-json" is a POST of a JSON body (UTF-8, compact) with these headers::

    Content-Type: application/json; charset=utf-8
    X-CMPP-Event-Id: status-42-app1     names the event; every retry repeats it, so the
                                        receiver de-duplicates on it (delivery is at least once)
    X-CMPP-Timestamp: 1700000000        when this attempt was sent, unix seconds
    X-CMPP-Signature: sha256=<hex>      HMAC-SHA256 of the exact body bytes, keyed with the
                                        app's master_secret encoded as UTF-8

A receiver checks the signature with ``verify(body, master_secret, header)`` (or the same
HMAC in any language) before it parses the body. Its MO body carries ``received_at`` only when
the app sets ``mo_receive_time``. Bodies, secrets and phone numbers are never logged; errors
are recorded as "HTTP 500", "timeout" or an exception's class name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Mapping

import aiohttp

from gateway.config import ApiSettings, AppConfig
from gateway.ops import Metrics
from gateway.status import DEFAULT, DeliveryStatus, ReceiptTables, provider_tables
from gateway.store import MessageView, MoView, OutboxEntry, Store

from . import jsms

log = logging.getLogger("cmpp_gateway.callbacks")

SIGNATURE_SCHEME = "sha256="
JITTER = 0.1          # up to 10% added to each backoff delay, so retries do not march in step


# ----------------------------------------------------------------------------- signatures

def sign(body: bytes, secret: str) -> str:
    """The ``X-CMPP-Signature`` value for ``body``: ``sha256=`` and the hex HMAC-SHA256 of
    the body under ``secret`` (UTF-8)."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_SCHEME + digest


def verify(body: bytes, secret: str, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret``. Constant-time;
    a missing, malformed or non-ASCII header is simply False."""
    if not isinstance(header, str):
        return False
    expected = sign(body, secret).encode("ascii")
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


# ----------------------------------------------------------------------------- payloads

def encode_body(payload: dict) -> bytes:
    """The exact bytes that are sent and signed."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def status_payload(entry: OutboxEntry, view: MessageView) -> dict:
    """A message's final status as its app receives it."""
    return {"event_id": entry.event_id, "type": "status", "msg_id": str(view.id),
            "mobile": view.recipient, "status": view.status,
            "temporary": view.status_temporary, "stat": view.status_stat,
            "provider": view.status_provider, "channel": view.channel, "parts": view.parts,
            "segments": [{"part": s.part, "status": s.status, "stat": s.stat}
                         for s in view.segments],
            "status_at": view.status_at, "created_at": view.created_at}


def mo_payload(entry: OutboxEntry, view: MoView, receive_time: bool = True) -> dict:
    """An MO message as its app receives it: ``text`` when it decoded, else ``content_hex``
    carries the raw payload (one of the two is null); ``received_at`` when ``receive_time``."""
    payload = {"event_id": entry.event_id, "type": "mo", "mo_id": str(view.id),
               "mobile": view.src_terminal_id, "dest_id": view.dest_id, "text": view.text,
               "content_hex": view.payload.hex() if view.text is None else None,
               "msg_fmt": view.msg_fmt, "parts": view.parts, "complete": view.complete}
    if receive_time:
        payload["received_at"] = view.received_at
    return payload


def callback_url(app: AppConfig | None, kind: str, view: MessageView | MoView | None = None
                 ) -> str:
    """The URL for ``kind`` ("status" or "mo"): a message's own callback URL, else the app's;
    "" when the app or its URL is missing."""
    if app is None:
        return ""
    if kind == "status":
        return getattr(view, "callback", None) or app.status_callback
    return app.mo_callback if kind == "mo" else ""


def mo_subscribers(apps: Mapping[str, AppConfig], channel: str) -> tuple[str, ...]:
    """The apps that get MO received on ``channel``: it is one of their channels and they
    have an mo_callback."""
    return tuple(name for name, app in apps.items()
                 if channel in app.channels and app.mo_callback)


def backoff(attempts: int, base: float, cap: float, rand: Callable[[], float] = random.random
            ) -> float:
    """Seconds before the next try after ``attempts`` earlier failures: base * 2**attempts,
    capped, plus up to 10% jitter."""
    delay = cap if attempts >= 64 else min(cap, base * 2 ** attempts)
    return delay * (1 + JITTER * rand())


# ----------------------------------------------------------------------------- the sender

class CallbackSender:
    """Sends what the store's outbox holds, ``batch`` callbacks at most in flight.

    Every ``poll`` seconds, or at once after ``wake()``, it fetches the due entries and starts
    one task per entry it is not already sending; each task POSTs, then records the outcome
    with ``store.callback_done`` and counts it in ``metrics.callbacks``. A store error is
    logged and the entry stays pending, to be sent again (same event id) at the next poll.
    A jsms status code comes from ``tables``: the table of the provider that decided the
    message (``providers`` maps a channel to its provider for messages no report decided).
    """

    def __init__(self, store: Store, apps: Mapping[str, AppConfig], settings: ApiSettings,
                 metrics: Metrics, clock: Callable[[], float] = time.time,
                 session: aiohttp.ClientSession | None = None, poll: float = 0.5,
                 batch: int = 100, backoff_base: float = 1.0, backoff_cap: float = 600.0,
                 tables: ReceiptTables | None = None, providers: Mapping[str, str] | None = None):
        self.store, self.apps, self.settings = store, apps, settings
        self.metrics, self.clock = metrics, clock
        self.poll, self.batch = poll, batch
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.tables, self.providers = tables or provider_tables(), providers or {}
        self._session, self._own_session = session, session is None
        self._timeout = aiohttp.ClientTimeout(total=settings.callback_timeout)
        self.verifier = jsms.UrlVerifier(lambda: self._session, settings.callback_timeout,
                                         settings.callback_verify_interval, metrics, clock,
                                         on_passed=self.wake)
        self.verifier.watch(apps)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._inflight: dict[int, asyncio.Task] = {}
        self._more = False          # the last fetch was full: more may be due

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the loop (in the running event loop). Starting twice does nothing."""
        if self._task is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="callbacks")
        self.verifier.start()

    def wake(self) -> None:
        """Look for due callbacks now instead of at the next poll."""
        self._wakeup.set()

    async def close(self) -> None:
        """Stop at once: the loop and every attempt in flight are cancelled and awaited (an
        interrupted attempt stays pending and is sent again, with the same event id, by the
        next sender); the HTTP session is closed if this sender created it."""
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.verifier.close()
        self._task = None
        self._inflight.clear()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def in_flight(self) -> int:
        """Attempts started and not yet recorded."""
        return len(self._inflight)

    # ------------------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self.send_due()
            except Exception as error:  # noqa: BLE001 - the loop outlives a bad read
                log.error("could not read the callback outbox (%s); trying again in %g s",
                          type(error).__name__, self.poll)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wakeup.wait()

    async def send_due(self) -> int:
        """Start an attempt for each due entry not already in flight, up to ``batch`` in
        flight; returns how many started. Store errors propagate."""
        free = self.batch - len(self._inflight)
        if free <= 0:
            self._more = True
            return 0
        entries = await self.store.due_callbacks(self.clock(), self.batch)
        self._more = len(entries) >= self.batch
        fresh = [e for e in entries if e.id not in self._inflight][:free]
        loop = asyncio.get_running_loop()
        for entry in fresh:
            task = loop.create_task(self._attempt(entry), name=f"callback-{entry.id}")
            self._inflight[entry.id] = task
            task.add_done_callback(lambda t, entry_id=entry.id: self._finished(entry_id, t))
        return len(fresh)

    def _finished(self, entry_id: int, task: asyncio.Task) -> None:
        if self._inflight.get(entry_id) is task:
            del self._inflight[entry_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("callback %d: unexpected %s", entry_id, type(task.exception()).__name__)
        if self._more:
            self.wake()

    # ------------------------------------------------------------------------- one attempt

    async def _attempt(self, entry: OutboxEntry) -> None:
        """Send one entry and record the outcome. A store error leaves it pending."""
        try:
            outcome = await self._send_and_record(entry)
        except Exception as error:  # noqa: BLE001 - this entry is tried again later
            log.error("callback %d (app %s, %s %d) not recorded (%s); it stays queued",
                      entry.id, entry.app, entry.kind, entry.ref, type(error).__name__)
            return
        if outcome == "held":
            self.metrics.callbacks_held.labels(entry.app, entry.kind).inc()
        else:
            self.metrics.callbacks.labels(entry.app, entry.kind, outcome).inc()

    async def _send_and_record(self, entry: OutboxEntry) -> str:
        """Returns the outcome: delivered, retry, failed, dropped or held."""
        app = self.apps.get(entry.app)
        if app is None:
            return await self._drop(entry, "no callback URL")
        view = await self._view(entry)
        url = callback_url(app, entry.kind, view)
        if not url:
            return await self._drop(entry, "no callback URL")
        if view is None:
            return await self._drop(entry, "gone")
        if app.callback_format == "jsms" and not await self.verifier.check(url):
            return await self._hold(entry, url)
        request = self._request(entry, app, view)
        if request is None:
            return await self._drop(entry, "binary MO: SMS_REPLY carries text only")
        error = await self._post(url, *request)
        now = self.clock()
        if error is None:
            await self.store.callback_done(entry.id, True, now, None, None)
            log.debug("callback %s delivered (attempt %d)", entry.event_id, entry.attempts + 1)
            return "delivered"
        next_attempt_at = self._next_attempt(entry, app, now, error)
        if next_attempt_at is not None:
            log.debug("callback %s: %s; next attempt in %.1f s", entry.event_id, error,
                      next_attempt_at - now)
        await self.store.callback_done(entry.id, False, now, next_attempt_at, error)
        return "retry" if next_attempt_at is not None else "failed"

    async def _drop(self, entry: OutboxEntry, reason: str) -> str:
        log.debug("callback %d (app %s, %s %d) dropped: %s", entry.id, entry.app, entry.kind,
                  entry.ref, reason)
        await self.store.callback_done(entry.id, False, self.clock(), None, reason)
        return "dropped"

    async def _hold(self, entry: OutboxEntry, url: str) -> str:
        """Keep a jsms callback back until its URL is checked again; give it up (failed) once
        ``callback_retry_for`` has passed since the event."""
        now, known = self.clock(), self.verifier.state(url)
        reason = f"URL not verified: {known.error if known else 'not checked'}"
        if now - entry.created_at >= self.settings.callback_retry_for:
            log.warning("callback given up: app %s, %s %d: its URL did not pass its echostr "
                        "check within %g s (%s)", entry.app, entry.kind, entry.ref,
                        self.settings.callback_retry_for, reason)
            await self.store.callback_done(entry.id, False, now, None, reason)
            return "failed"
        until = known.next_check if known else now + self.verifier.interval
        await self.store.hold_callback(entry.id, until, reason)
        return "held"

    async def _view(self, entry: OutboxEntry) -> MessageView | MoView | None:
        """The event's message or MO, read from the store now; None when it is gone (or the
        kind is unknown)."""
        if entry.kind == "status":
            return await self.store.message(entry.ref)
        if entry.kind == "mo":
            return await self.store.mo_view(entry.ref)
        return None

    def _request(self, entry: OutboxEntry, app: AppConfig, view: MessageView | MoView
                 ) -> tuple[bytes, dict[str, str]] | None:
        """The body and headers of the POST in the app's format; None when the format cannot
        carry the event (a binary MO in SMS_REPLY)."""
        if app.callback_format == "jsms":
            if entry.kind == "status":
                data, kind = jsms.report_data(view, self.jsms_status(view)), jsms.SMS_REPORT
            else:
                data, kind = jsms.reply_data(view), jsms.SMS_REPLY
            if data is None:
                return None
            return (jsms.form(app, kind, data, self.clock()),
                    {"Content-Type": jsms.FORM, "X-CMPP-Event-Id": entry.event_id})
        payload = status_payload(entry, view) if entry.kind == "status" else \
            mo_payload(entry, view, app.mo_receive_time)
        body = encode_body(payload)
        return body, {"Content-Type": "application/json; charset=utf-8",
                      "X-CMPP-Event-Id": entry.event_id,
                      "X-CMPP-Timestamp": str(int(self.clock())),
                      "X-CMPP-Signature": sign(body, app.master_secret)}

    def jsms_status(self, view: MessageView) -> int:
        """The JSMS status code of a final message, from the table of the provider that
        decided it (else its channel's)."""
        provider = view.status_provider or self.providers.get(view.channel, DEFAULT)
        codes = self.tables.for_provider(provider)
        try:
            status = DeliveryStatus(view.status)
        except ValueError:
            status = DeliveryStatus.UNKNOWN
        return codes.jsms_status(status, view.status_stat)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """POST the body; None when acknowledged (2xx), else why not, in words that carry no
        content: "HTTP 500", "timeout", or the exception's class name."""
        try:
            async with self._session.post(url, data=body, headers=headers,
                                          timeout=self._timeout,
                                          allow_redirects=False) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except asyncio.TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, ValueError, OSError) as error:
            return type(error).__name__

    def _next_attempt(self, entry: OutboxEntry, app: AppConfig, now: float,
                      error: str) -> float | None:
        """When to try again, or None (with a warning): after the next wait of the app's
        retry schedule while one is left; without a schedule, with backoff until
        ``callback_retry_for`` has passed since the event."""
        schedule = app.retry_schedule
        if schedule is not None and entry.attempts < len(schedule):
            return now + schedule[entry.attempts]
        if schedule is None and now - entry.created_at < self.settings.callback_retry_for:
            return now + backoff(entry.attempts, self.backoff_base, self.backoff_cap)
        log.warning("callback given up: app %s, %s %d, after %d attempt(s) over %g s (last: %s)",
                    entry.app, entry.kind, entry.ref, entry.attempts + 1,
                    now - entry.created_at, error)
        return None

    def report(self) -> dict:
        """For /readyz: the apps' jsms URLs that have not passed their echostr check."""
        return {"unverified_urls": self.verifier.unverified()}
