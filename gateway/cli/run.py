"""``cmpp-gateway run``: the daemon (``gateway.daemon.Gateway``) until SIGTERM, with SIGHUP's
reload; the signals, the start that may wait for its store, and the exit codes (0 after a
drain, 2 when the first configuration, its tables or the store cannot be used)."""

from __future__ import annotations

import asyncio
import logging
import signal

from gateway.config import Config, ConfigError, load_config, world_readable_warning
from gateway.daemon import Gateway, GatewayOptions
from gateway.ops import (
    LOOPS,
    LoopUnavailable,
    run_loop,
    settle_heap,
    setup_logging,
    tune_collector,
    unsettle_heap,
)
from gateway.status import TableError, provider_tables
from gateway.store import StoreError

log = logging.getLogger("cmpp_gateway.daemon")     # the daemon's: operators filter on it


async def serve(config_path: str) -> int:
    """Run until SIGTERM/SIGINT (0 after draining). SIGHUP reloads: a configuration (and its
    receipt tables) that checks out replaces the running one after a drain; one that does not
    is logged and the gateway keeps running as it was. 2 when the first configuration, its
    tables or the store cannot be used. A signal that arrives while the gateway is starting is
    acted on once it has started; SIGTERM or SIGINT while it waits for a database that cannot
    be reached yet ends the wait (0)."""
    loop = asyncio.get_running_loop()
    tune_collector()
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
            gateway = Gateway(config, GatewayOptions(wait_for_store=True))
            try:
                if not await _start(gateway, received):
                    return 0
            except (StoreError, TableError) as error:
                log.error("%s", error)
                print(error, flush=True)
                return 2
            settle_heap()
            config = await _until_stop_or_reload(gateway, config_path, received)
            unsettle_heap()
            if config is None:
                return 0
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _start(gateway: Gateway, received: asyncio.Queue[int]) -> bool:
    """Start ``gateway``; False when SIGTERM or SIGINT came while it waited for its store
    (then it is abandoned). Other signals, and those that come while it starts otherwise,
    are queued again for once it has started."""
    starting = asyncio.ensure_future(gateway.start())
    later: list[int] = []
    try:
        while not starting.done():
            signalled = asyncio.ensure_future(received.get())
            await asyncio.wait((starting, signalled), return_when=asyncio.FIRST_COMPLETED)
            if not signalled.done():
                signalled.cancel()
                continue
            signum = signalled.result()
            if signum != signal.SIGHUP and gateway.store_waiting is not None:
                log.info("signal %s while waiting for the store: stopping",
                         signal.Signals(signum).name)
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                await gateway.abandon()
                return False
            later.append(signum)
        starting.result()
        return True
    finally:
        for signum in later:
            received.put_nowait(signum)


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
    parser.add_argument("--loop", choices=LOOPS, default="asyncio",
                        help="the event loop: the standard library's (asyncio, the default), "
                        "uvloop's (the 'fast' extra), or uvloop's when it is installed (auto)")
    parser.set_defaults(func=run_command)


def run_command(args) -> int:
    """``cmpp-gateway run``: ``serve`` on the event loop ``--loop`` chooses; 2 when it is
    uvloop and uvloop is not installed."""
    try:
        return run_loop(serve(args.config), args.loop)
    except LoopUnavailable as error:
        print(error, flush=True)
        return 2
