"""The gateway process: store, pools, dispatchers, receipts and the operators' endpoints.

``Gateway.start`` opens the store and picks up where it stopped: messages without a recorded
SUBMIT_RESP are submitted (only their missing parts), MO parts not yet reassembled are fed
back, callbacks not yet sent are sent (when apps are configured). ``Gateway.stop`` drains: no
new work, submits in flight finish and are recorded, callbacks in flight are cut short (they
stay queued), every connection is terminated, the store is flushed.
``cmpp-gateway run`` runs it until SIGTERM (drain, exit 0); SIGHUP drains and starts again
from the configuration file and the store as they are.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.channel import ChannelPool, ChannelPools, PoolTuning
from gateway.config import (
    ChannelConfig,
    Config,
    ConfigError,
    load_config,
    split_host_port,
    world_readable_warning,
)
from gateway.ops import Metrics, OpsServer, setup_logging
from gateway.pipeline import CallbackSender, ChannelDispatcher, ReceiptHandler, mo_subscribers
from gateway.status import TableError, provider_tables
from gateway.store import (
    Accepted,
    AcceptedRequest,
    ApiRequest,
    MoMessage,
    NewMessage,
    StoreError,
    create_store,
)

log = logging.getLogger("cmpp_gateway.daemon")

SWEEP_INTERVAL = 60.0


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
    # The apps an MO on a channel is queued for; None: those with the channel among their
    # channels and an mo_callback (gateway.callbacks.mo_subscribers).
    mo_apps: Callable[[str], tuple[str, ...]] | None = None


class Gateway:
    def __init__(self, config: Config, options: GatewayOptions | None = None) -> None:
        self.config = config
        self.options = options or GatewayOptions()
        self.store = create_store(config.gateway.store, config.gateway.store_password)
        self.metrics = Metrics(self.options.registry)
        self.channels: dict[str, _Channel] = {}
        self.pools: ChannelPools | None = None
        self.ops: OpsServer | None = None
        self.callbacks: CallbackSender | None = None
        self.api = None
        self.api_server = None
        self._sweeper: asyncio.Task | None = None
        self._running = False

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start everything. Raises TableError (bad receipt-code tables) or StoreError (an
        unusable store file) before anything is running."""
        tables = provider_tables(self.config.gateway.providers)
        await self.store.open()
        self.store.queue_status_callbacks_for(
            name for name, app in self.config.apps.items() if app.status_callback)
        if self.config.apps:
            self.callbacks = CallbackSender(self.store, self.config.apps, self.config.api,
                                            self.metrics, clock=self.options.clock)
            self.callbacks.start()
        for name, channel in self.config.channels.items():
            codes = tables.for_provider(channel.provider)
            cm = self.metrics.channel(name, codes)
            receipts = ReceiptHandler(name, self.store, codes, cm, clock=self.options.clock,
                                      mo_apps=lambda name=name: self._mo_apps(name),
                                      on_mo=self._on_mo)
            pool = ChannelPool(channel, tuning=self.options.tuning, on_deliver=receipts.on_deliver,
                               on_event=cm.on_event)
            dispatcher = ChannelDispatcher(channel, pool, self.store, cm, clock=self.options.clock)
            self.channels[name] = _Channel(channel, pool, receipts, dispatcher)
        self.pools = ChannelPools({name: c.pool for name, c in self.channels.items()})
        self.metrics.watch(self.pools.status, self.store.counts_snapshot,
                           self.store.unmatched_snapshot)
        await self.pools.start()
        loose = await self.store.unassembled_mo_parts()
        for c in self.channels.values():
            await c.receipts.start(loose)
            c.dispatcher.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="report-timeout")
        if self.config.apps and self.options.serve_api:
            await self._start_api()
        if self.options.serve_ops:
            self.ops = OpsServer(self.metrics.registry, self.readiness)
            host, port = self.options.ops_address or \
                split_host_port(self.config.gateway.metrics_listen)
            await self.ops.start(host, port)
        self._running = True
        log.info("gateway started with %d channel(s)", len(self.channels))

    async def stop(self) -> None:
        """Drain and stop; bounded by the configuration's drain_timeout."""
        if not self._running:
            return
        self._running = False
        timeout = self.config.gateway.drain_timeout
        if self.api_server is not None:                  # no new work from now on
            await self.api_server.stop()
        await asyncio.gather(*(c.dispatcher.drain(timeout) for c in self.channels.values()))
        await self.pools.close(timeout)
        for c in self.channels.values():
            await c.receipts.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self.callbacks is not None:
            await self.callbacks.close()
        await self.store.close()
        if self.ops is not None:
            await self.ops.stop()
        log.info("gateway stopped")

    # ------------------------------------------------------------------------- work

    def _mo_apps(self, channel: str) -> tuple[str, ...]:
        if self.options.mo_apps is not None:
            return self.options.mo_apps(channel)
        return mo_subscribers(self.config.apps, channel)

    async def accept(self, messages: list[NewMessage]) -> list[Accepted]:
        """Store messages durably, then tell their channels' dispatchers."""
        accepted = await self.store.accept(messages, self.options.clock())
        for channel in {m.channel for m in messages}:
            self.channels[channel].dispatcher.notify()
        return accepted

    async def accept_request(self, request: ApiRequest) -> AcceptedRequest:
        """Store an API request whole, then tell its channels' dispatchers."""
        accepted = await self.store.accept_request(request, self.options.clock())
        if not accepted.replayed:
            for channel in {m.channel for m in request.messages}:
                self.channels[channel].dispatcher.notify()
        return accepted

    async def _start_api(self) -> None:
        from gateway.api import Api, ApiServer
        self.api = Api(self, self.config, clock=self.options.clock)
        await self.api.load()
        self.api_server = ApiServer(self.api)
        host, port = self.options.api_address or split_host_port(self.config.gateway.api_listen)
        await self.api_server.start(host, port)

    def _on_mo(self, mo: MoMessage, mo_id: int) -> None:
        """An MO of "T" or "TD" unsubscribes its sender from marketing templates."""
        if (mo.text or "").strip().upper() not in ("T", "TD"):
            return
        mobile = mo.src_terminal_id.lstrip("+")
        mobile = mobile[2:] if len(mobile) == 13 and mobile.startswith("86") else mobile
        self.store.unsubscribe(mobile, self.options.clock(), mo.channel)
        if self.api is not None:
            self.api.rules.unsubscribed.add(mobile)
        log.info("%s unsubscribed from marketing messages (MO %d)", mobile, mo_id)

    async def _sweep(self) -> None:
        timeout = self.config.gateway.report_timeout
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            expired = await self.store.expire_reports(self.options.clock(), timeout)
            if expired:
                log.warning("%d message(s) had no status report within %g s: unknown",
                            len(expired), timeout)

    def readiness(self) -> tuple[bool, dict]:
        statuses = self.pools.status() if self.pools else []
        channels = {s.channel: {"healthy": s.healthy, "open": s.open, "wanted": s.wanted,
                                "reason": s.reason,
                                "connections": [{"name": c.name, "state": c.state,
                                                 "in_window": c.in_window, "window": c.window,
                                                 "last_error": c.last_error}
                                                for c in s.connections]}
                    for s in statuses}
        ready = self._running and any(s.healthy for s in statuses)
        return ready, {"channels": channels}


# ----------------------------------------------------------------------------- the command

async def serve(config_path: str) -> int:
    """Run until SIGTERM/SIGINT (0 after draining). SIGHUP reloads: a configuration (and its
    receipt tables) that checks out replaces the running one after a drain; one that does not
    is logged and the gateway keeps running as it was. 2 when the first configuration, its
    tables or the store cannot be used. A signal that arrives while the gateway is starting is
    acted on once it has started."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    received: asyncio.Queue[int] = asyncio.Queue()
    for signum in signals:
        loop.add_signal_handler(signum, received.put_nowait, signum)
    try:
        try:
            config = load_config(config_path)
        except ConfigError as error:
            print(error, flush=True)
            return 2
        while True:
            setup_logging(config.gateway.log_level, secrets=config.secrets())
            warning = world_readable_warning(config_path)
            if warning:
                log.warning("%s", warning.removeprefix("warning: "))
            gateway = Gateway(config)
            try:
                await gateway.start()
            except (StoreError, TableError) as error:
                log.error("%s", error)
                print(error, flush=True)
                return 2
            config = await _until_stop_or_reload(gateway, config_path, received)
            if config is None:
                return 0
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _until_stop_or_reload(gateway: Gateway, config_path: str,
                                received: asyncio.Queue[int]) -> Config | None:
    """Serve until a signal: drain and return the new configuration on a SIGHUP whose file
    checks out, or None on SIGTERM/SIGINT. A SIGHUP with a bad file only logs its problems."""
    while True:
        signum = await received.get()
        config = None
        if signum == signal.SIGHUP:
            try:
                config = load_config(config_path)
                provider_tables(config.gateway.providers)
            except (ConfigError, TableError) as error:
                log.error("reload refused, still running the previous configuration: %s",
                          str(error).replace("\n", "; "))
                continue
        log.info("signal %s: draining", signal.Signals(signum).name)
        await gateway.stop()
        return config


def add_run_command(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run the gateway daemon")
    parser.add_argument("--config", required=True, help="the TOML configuration file")
    parser.set_defaults(func=lambda args: asyncio.run(serve(args.config)))
