"""The gateway process: store, pools, dispatchers, receipts, the API, the operators'
endpoints and their console.

``Gateway.start`` opens the store and picks up where it stopped: messages without a recorded
SUBMIT_RESP are submitted (only their missing parts), MO parts not yet reassembled are fed
back, callbacks not yet sent are sent (when apps are configured). ``Gateway.stop`` drains: no
new work, submits in flight finish and are recorded, callbacks in flight are cut short (they
stay queued), every connection is terminated, the store is flushed.
The apps are the configuration's and those made in the console (kept in the store): every
``APPS_POLL`` seconds the gateway reads the stored ones again, so that an app made or changed
on another instance sharing the store is served here too.
``cmpp-gateway run`` (``gateway.cli.run``) runs it until SIGTERM (drain, exit 0); SIGHUP
drains and starts again from the configuration file and the store as they are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.api import ApiError, send_message, upload_users
from gateway.channel import ChannelPool, ChannelPools, PoolTuning
from gateway.config import ChannelConfig, Config, split_host_port
from gateway.console import ConsoleServer, SendRefused, Services, UploadRefused
from gateway.ops import Metrics, OpsServer, describe_loop, loop_name
from gateway.pipeline import (
    CallbackSender,
    ChannelDispatcher,
    ReceiptHandler,
    ReportJournal,
    SlotKeeper,
    Sweeper,
    mo_subscribers,
    orphans,
)
from gateway.status import provider_tables
from gateway.store import (
    Accepted,
    AcceptedRequest,
    ApiRequest,
    AppDirectory,
    MoMessage,
    NewMessage,
    StoreError,
    StoreUnavailable,
    create_store,
)

log = logging.getLogger("cmpp_gateway.daemon")

APPS_POLL = 2.0
# Seconds between two attempts to open a database that cannot be reached at start: the first
# wait, doubled after each attempt up to the last.
STORE_RETRY = (1.0, 30.0)
MAINLAND = re.compile(r"(?:\+|00)?86(1[3-9]\d{9})")    # an SMS center writes it either way


@dataclass
class _Channel:
    config: ChannelConfig
    pool: ChannelPool
    receipts: ReceiptHandler
    dispatcher: ChannelDispatcher


@dataclass
class GatewayOptions:
    """Knobs for tests and embedding; the configuration file holds everything else."""

    registry: CollectorRegistry | None = None
    tuning: PoolTuning | None = None
    clock: Callable[[], float] = time.time
    serve_ops: bool = True
    ops_address: tuple[str, int] | None = None     # instead of metrics_listen (tests: port 0)
    serve_api: bool = True
    api_address: tuple[str, int] | None = None     # instead of api_listen (tests: port 0)
    serve_console: bool = True                     # when [console] listen is set
    console_address: tuple[str, int] | None = None  # instead of [console] listen
    # The apps an MO on a channel is queued for; None: those with the channel among their
    # channels and an mo_callback (gateway.callbacks.mo_subscribers).
    mo_apps: Callable[[str], tuple[str, ...]] | None = None
    sweep_interval: float = 60.0          # the store's housekeeping (gateway.pipeline.sweeper)
    store_max_pages: int | None = None    # SQLite's max_page_count (tests: a store that is full)
    # A database that cannot be reached at start: wait for it (``cmpp-gateway run``), or
    # raise StoreError (embedding, tests).
    wait_for_store: bool = False


class Gateway:
    def __init__(self, config: Config, options: GatewayOptions | None = None) -> None:
        self.config = config
        self.options = options or GatewayOptions()
        self.store = create_store(config.gateway.store, config.gateway.store_password,
                                  max_pages=self.options.store_max_pages)
        self.apps = AppDirectory(config.apps, config.channels, self.store, self.options.clock)
        self.metrics = Metrics(self.options.registry)
        self.channels: dict[str, _Channel] = {}
        self.pools: ChannelPools | None = None
        self.ops: OpsServer | None = None
        self.callbacks: CallbackSender | None = None
        self.api = None
        self.api_server = None
        self.console: ConsoleServer | None = None
        self._apps_watcher: asyncio.Task | None = None
        self.sweeper = Sweeper(self.store, config.gateway, config.api, self.metrics,
                               clock=self.options.clock, interval=self.options.sweep_interval)
        self._running = False
        # Several gateways on one store: the channels' connection slots shared among them.
        self.slots: SlotKeeper | None = None
        self.store_waiting: str | None = None    # why the store could not be opened yet

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start everything. Raises TableError (bad receipt-code tables) or StoreError (an
        unusable store) before anything but the ops listener is running (see ``_open_store``:
        a database that cannot be reached yet)."""
        tables = provider_tables(self.config.gateway.providers)
        await self._open_store()
        self._tables = tables
        await self.apps.refresh()
        self._apps_changed()
        serving = bool(self.apps) or self.config.console.enabled
        shared = self.store.shared
        journals = self.store.report_journal_directory()
        for name, channel in self.config.channels.items():
            codes = tables.for_provider(channel.provider)
            cm = self.metrics.channel(name, codes)
            receipts = ReceiptHandler(name, self.store, codes, cm, clock=self.options.clock,
                                      mo_apps=lambda name=name: self._mo_apps(name),
                                      on_mo=self._on_mo, journal=None if journals is None
                                      else ReportJournal(journals, name))
            pool = ChannelPool(channel, tuning=self.options.tuning, on_deliver=receipts.on_deliver,
                               on_event=cm.on_event, on_resend=cm.resend, shared=shared)
            dispatcher = ChannelDispatcher(channel, pool, self.store, cm, clock=self.options.clock)
            self.channels[name] = _Channel(channel, pool, receipts, dispatcher)
        self.pools = ChannelPools({name: c.pool for name, c in self.channels.items()})
        self.metrics.watch(self.pools.status, self.store.counts_snapshot,
                           self.store.unmatched_snapshot)
        self.metrics.watch_store(self.store.size_snapshot, self.store.writable_snapshot,
                                 self.store.commit_snapshot)
        for c in self.channels.values():   # reports answered before a crash, before new ones
            await c.receipts.replay()
        if journals is not None and (left := orphans(journals, self.channels)):
            log.error("report journal %s: %d file(s) of channels no longer configured (%s): "
                      "their reports were answered and are not stored; configure the channel "
                      "again to store them", journals, len(left), ", ".join(left[:5]))
        await self.pools.start()
        if shared:             # before anything is claimed: the claims carry this gateway's id
            self.slots = SlotKeeper(self.store, self.pools.pools, on_lost=self._slots_lost,
                                    on_forgotten=self._forgotten,
                                    on_unsubscribed=self._unsubscribed_elsewhere)
            await self.slots.start()
            self.metrics.watch_slots(self.slots.report)
        if serving:
            self._start_callbacks()
        loose = await self.store.unassembled_mo_parts()
        for c in self.channels.values():
            await c.receipts.start(loose)
            c.dispatcher.start()
        self.sweeper.start()
        self._apps_watcher = asyncio.get_running_loop().create_task(self._watch_apps(),
                                                                    name="apps")
        if serving:
            await self._start_api()
        if self.config.console.enabled and self.options.serve_console:
            await self._start_console()
        if self.options.serve_ops and self.ops is None:
            await self._start_ops()
        self._running = True
        log.info("gateway started with %d channel(s), event loop %s", len(self.channels),
                 describe_loop())

    async def _open_store(self) -> None:
        """Open the store. A database that cannot be reached (StoreUnavailable) is StoreError,
        or with ``wait_for_store`` is tried again, waiting STORE_RETRY, with a warning at each
        attempt; meanwhile the ops listener answers (/healthz 200, /readyz 503 with the
        reason). A database that refuses this gateway, or is not a store it can use, still
        raises StoreError at once."""
        wait = STORE_RETRY[0]
        while True:
            try:
                await self.store.open()
                self.store_waiting = None
                return
            except StoreUnavailable as error:
                if not self.options.wait_for_store:
                    raise StoreError(str(error)) from None
                self.store_waiting = str(error)
            log.warning("%s; trying again in %g s", self.store_waiting, wait)
            if self.options.serve_ops and self.ops is None:
                await self._start_ops()
            await asyncio.sleep(wait)
            wait = min(2 * wait, STORE_RETRY[1])

    async def _start_ops(self) -> None:
        self.ops = OpsServer(self.metrics.registry, self.readiness)
        host, port = self.options.ops_address or \
            split_host_port(self.config.gateway.metrics_listen)
        await self.ops.start(host, port)

    async def abandon(self) -> None:
        """Stop what a start left running when it was cancelled (waiting for its store): the
        ops listener."""
        if not self._running and self.ops is not None:
            await self.ops.stop()
            self.ops = None

    async def stop(self) -> None:
        """Drain and stop; bounded by the configuration's drain_timeout."""
        if not self._running:
            return
        self._running = False
        timeout = self.config.gateway.drain_timeout
        if self._apps_watcher is not None:               # starts nothing from now on
            self._apps_watcher.cancel()
            await asyncio.gather(self._apps_watcher, return_exceptions=True)
        if self.console is not None:
            await self.console.stop()
        if self.api_server is not None:                  # no new work from now on
            await self.api_server.stop()
        if self.slots is not None:
            self.slots.closing = True            # takes no slot from here on
        await asyncio.gather(*(c.dispatcher.drain(timeout) for c in self.channels.values()))
        await self.pools.close(timeout)
        if self.slots is not None:               # the connections are closed: give the slots up
            await self.slots.close()
        for c in self.channels.values():
            await c.receipts.close()
        await self.sweeper.close()
        if self.callbacks is not None:
            await self.callbacks.close()
        await self.store.close()
        if self.ops is not None:
            await self.ops.stop()
        log.info("gateway stopped")

    # ------------------------------------------------------------------------- work

    def _serving(self, status) -> bool:
        """Whether the channel is served: logged in here, or (several gateways) by the others
        while this gateway holds none of its slots."""
        if self.slots is None or status.slots:
            return status.healthy
        return status.healthy and self.slots.cluster.get(status.channel, 0) > 0

    def _slots_lost(self, channel: str) -> None:
        """This gateway holds no slot of ``channel`` now: the messages it fetched go back."""
        self.channels[channel].dispatcher.let_go()

    def _forgotten(self) -> None:
        """The other gateways took this one for dead: what it had claimed is theirs."""
        for c in self.channels.values():
            c.dispatcher.forget()

    def _mo_apps(self, channel: str) -> tuple[str, ...]:
        if self.options.mo_apps is not None:
            return self.options.mo_apps(channel)
        return mo_subscribers(self.apps, channel)

    async def accept(self, messages: list[NewMessage]) -> list[Accepted]:
        """Store messages durably, then tell their channels' dispatchers."""
        accepted = await self.store.accept(messages, self.options.clock())
        self._notify(messages)
        return accepted

    async def accept_request(self, request: ApiRequest) -> AcceptedRequest:
        """Store an API request whole, then tell its channels' dispatchers."""
        accepted = await self.store.accept_request(request, self.options.clock())
        if not accepted.replayed:
            self._notify(request.messages)
        return accepted

    def _notify(self, messages) -> None:
        """Tell each channel's dispatcher of its new messages, and how urgent the most urgent
        of them is."""
        urgency: dict[str, int] = {}
        for m in messages:
            urgency[m.channel] = min(m.priority, urgency.get(m.channel, m.priority))
        for channel, priority in urgency.items():
            self.channels[channel].dispatcher.notify(priority)

    def _start_callbacks(self) -> None:
        self.callbacks = CallbackSender(
            self.store, self.apps, self.config.api, self.metrics, clock=self.options.clock,
            tables=self._tables,
            providers={name: c.provider for name, c in self.config.channels.items()})
        self.callbacks.start()

    async def _start_api(self) -> None:
        """The API's context always (the console sends through it); its server unless the
        options say not to."""
        from gateway.api import Api, ApiServer
        self.api = Api(self, self.config, clock=self.options.clock)
        await self.api.load()
        repeats = self.api.rules.repeats
        self.metrics.watch_repeats(lambda: len(repeats), lambda: repeats.refused)
        if not self.options.serve_api:
            return
        self.api_server = ApiServer(self.api)
        host, port = self.options.api_address or split_host_port(self.config.gateway.api_listen)
        await self.api_server.start(host, port)

    async def _start_console(self) -> None:
        self.console = ConsoleServer(Services(
            config=self.config, store=self.store, apps=self.apps, metrics=self.metrics,
            pools=self.pools.status, apps_changed=self.refresh_apps,
            reviews_changed=self._reviews_changed, send=self._console_send,
            upload_users=self._console_upload, clock=self.options.clock,
            callback_checks=self._callback_checks))
        host, port = self.options.console_address or \
            split_host_port(self.config.console.listen)
        await self.console.start(host, port)

    def _callback_checks(self, app: str) -> list[dict]:
        return self.callbacks.url_checks(app) if self.callbacks is not None else []

    # ------------------------------------------------------------------------- apps

    async def refresh_apps(self) -> None:
        """Read the apps made in the console again; apply them if they changed. A gateway
        that had no app to serve starts its callbacks and API with the first one."""
        if not await self.apps.refresh():
            return
        self._apps_changed()
        if self.apps and self._running and self.callbacks is None:
            self._start_callbacks()
            await self._start_api()

    def _apps_changed(self) -> None:
        self.store.queue_status_callbacks_for(
            name for name, app in self.apps.items() if app.status_callback)
        if self.callbacks is not None:          # a new or changed URL is checked before use
            self.callbacks.verifier.watch(self.apps)

    async def _watch_apps(self) -> None:
        while True:
            await asyncio.sleep(APPS_POLL)
            try:
                await self.refresh_apps()
            except Exception as error:  # noqa: BLE001 - keep serving the apps read before
                log.warning("could not read the apps from the store (%s); trying again in "
                            "%g s", type(error).__name__, APPS_POLL)

    def _reviews_changed(self) -> None:
        if self.api is not None:
            self.api.review_changed()

    async def _console_send(self, app_name: str, temp_id: int, mobile: str,
                            params: dict) -> int:
        """The console's test message, through the API's own path; SendRefused with the
        JSMS code when the API would refuse it."""
        app = self.apps.get(app_name)
        if self.api is None or app is None:
            raise SendRefused(50013, f"no app {app_name!r} is served")
        if not app.enabled:
            raise SendRefused(50036, "the app is disabled")
        try:
            return await send_message(self.api, app, temp_id, mobile, params)
        except ApiError as error:
            raise SendRefused(error.code, error.text) from None

    async def _console_upload(self, app_name: str, data: bytes | bytearray, filename: str,
                              content_type: str) -> dict:
        """The console's users file, through the API's own path; UploadRefused with the JSMS
        code when the API would refuse the file whole."""
        app = self.apps.get(app_name)
        if self.api is None or app is None:
            raise UploadRefused(50007, f"no app {app_name!r} is served")
        try:
            return await upload_users(self.api, app, data, filename, content_type)
        except ApiError as error:
            raise UploadRefused(error.code, error.text) from None

    def _on_mo(self, mo: MoMessage, mo_id: int) -> None:
        """An MO of "T" or "TD" unsubscribes its sender from marketing templates."""
        if (mo.text or "").strip().upper() not in ("T", "TD"):
            return
        mobile = mo.src_terminal_id.strip()
        mainland = MAINLAND.fullmatch(mobile)
        mobile = mainland.group(1) if mainland else mobile
        self.store.unsubscribe(mobile, self.options.clock(), mo.channel)
        if self.api is not None:
            self.api.rules.unsubscribed.add(mobile)
        log.info("%s unsubscribed from marketing messages (MO %d)", mobile, mo_id)

    def _unsubscribed_elsewhere(self, numbers: frozenset[str]) -> None:
        """Numbers unsubscribed by an MO to any gateway sharing the store (SlotKeeper)."""
        if self.api is not None:
            self.api.rules.unsubscribed.update(numbers)

    def readiness(self) -> tuple[bool, dict]:
        """Ready: started, at least one channel served, and the store can write."""
        writable, reason = (False, self.store_waiting) if self.store_waiting else \
            self.store.writable_snapshot()
        statuses = [dataclasses.replace(s, healthy=self._serving(s)) for s in
                    (self.pools.status() if self.pools else [])]
        channels = {s.channel: {"healthy": s.healthy, "open": s.open, "wanted": s.wanted,
                                "reason": s.reason,
                                "connections": [{"name": c.name, "state": c.state,
                                                 "in_window": c.in_window, "window": c.window,
                                                 "last_error": c.last_error}
                                                for c in s.connections]}
                    for s in statuses}
        ready = self._running and any(s.healthy for s in statuses) and writable
        detail = {"store": {"writable": writable, "reason": reason}, "channels": channels,
                  "event_loop": loop_name()}
        if self.slots is not None:
            detail["cluster"] = self.slots.report()
        if self.callbacks is not None:           # reported; the API still serves without them
            detail["callbacks"] = self.callbacks.report()
        return ready, detail
