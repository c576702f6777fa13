"""Memory benchmark: the gateway's peak RSS at full speed for minutes, and with 1 M pending.

    python -m gateway.bench.memory [--minutes 10] [--pending 1000000] [--drain 60]
                                   [--connections 16] [--batch-size 1000] [--limit 300]
                                   [--phases speed,pending] [--sample 10]

Issue 15's bound: peak RSS does not grow with the accept rate or the run's length. The gateway
runs as its own process (``python -m gateway.cli run``, the default settings of everything that
holds memory: the repeat rule on with its 30 s window and ``repeat_keys``, the idempotency
window, retention), its SQLite store in a temporary directory, against the simulator in another
process (``session.ServerProcess``: every SUBMIT answered, a DELIVRD report sent at once).

1. ``speed``: this process POSTs ``--batch-size``-recipient batches (a new number and text for
   every recipient) over ``--connections`` concurrent requests for ``--minutes``, as fast as
   the gateway answers. The gateway accepts faster than the channel delivers, so the backlog
   grows in the store the whole run (on disk: that is where an accepted message belongs) while
   the repeat rule's memory sits at its limit.
2. ``pending``: ``--pending`` messages accepted through the API while the channel's SMS center
   is down (nothing listens on its port), then the gateway is stopped and started again on
   that store against the simulator, and drains the backlog for ``--drain`` seconds.

Every ``--sample`` seconds (10) a row: the gateway's RSS and peak RSS (VmHWM), messages accepted per second,
delivered per second (``cmpp_messages_final``), the backlog (``cmpp_store_messages``,
accepted and submitted) and the repeat rule's keys (``cmpp_api_repeat_keys``). The verdict per
phase: the peak under ``--limit`` MiB, and for ``speed`` the RSS trend after the first third of
the run (Theil-Sen: growth over the span at most 10% of the median, at least 8 MiB). Exit
status 0 when every phase passes, 1 when one fails, 2 when the gateway could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import aiohttp

from .http import Numbers, batch_accepted, batch_body
from .session import ACCOUNT, HOST, SECRET, ServerProcess
from .soak_gateway import GatewayProcess, free_port, total
from .trend import Rule, judge

APP_KEY, MASTER_SECRET = "memapp", "memory-master-secret"

CONFIG = """[gateway]
store = "{dir}/memory.sqlite"
api_listen = "{host}:{api}"
metrics_listen = "{host}:{ops}"
log_level = "warning"
drain_timeout = 5

[channels.memory]
provider = "default"
host = "{host}"
port = {sim}
account = "{account}"
password_env = "MEMORY_CHANNEL_PASSWORD"
access_number = "10690001"
connections = 4
window = 16

[api]
max_connections_per_source = 1000

[apps.memory]
app_key = "{app_key}"
master_secret_env = "MEMORY_MASTER_SECRET"
signature = "性能测试"

[templates.1]
type = "notification"
content = "您的订单{{{{order}}}}已发货，请注意查收"
"""


class MemoryGateway(GatewayProcess):
    """``python -m gateway.cli run`` with the defaults of every bounded memory, on the store
    in ``directory`` (kept from one gateway to the next), its channel pointed at port ``sim``."""

    template, store_name = CONFIG, "memory.sqlite"
    fixed: ClassVar[dict] = {"account": ACCOUNT, "app_key": APP_KEY}
    secrets: ClassVar[dict] = {"MEMORY_CHANNEL_PASSWORD": SECRET, "MEMORY_MASTER_SECRET": MASTER_SECRET}

    def __init__(self, directory: Path, sim: int) -> None:
        super().__init__(directory, {"sim": sim})

    def peak_mib(self) -> float:
        """VmHWM: the most resident memory the process has had."""
        return self.rss_mib("VmHWM")


class Sender:
    """``connections`` workers POSTing batches until ``stop`` is set or ``limit`` messages
    were accepted; counts what was accepted and refused (by HTTP status/JSMS code)."""

    def __init__(self, http: aiohttp.ClientSession, gateway: MemoryGateway, size: int) -> None:
        self.http, self.size, self.numbers = http, size, Numbers()
        self.url = f"http://{HOST}:{gateway.api}/v1/messages/batch"
        self.headers = {"Authorization": aiohttp.encode_basic_auth(APP_KEY, MASTER_SECRET),
                        "Content-Type": "application/json"}
        self.accepted, self.refused, self.stop = 0, 0, False

    async def run(self, connections: int, limit: float = float("inf")) -> None:
        async def worker() -> None:
            while not self.stop and self.accepted < limit:
                size = int(min(self.size, max(1, limit - self.accepted)))
                body = batch_body(self.numbers, size)
                try:
                    async with self.http.post(self.url, data=body,
                                              headers=self.headers) as response:
                        accepted = batch_accepted(response.status, await response.read())
                except aiohttp.ClientError:
                    accepted = 0
                self.accepted += accepted
                self.refused += size - accepted
                if not accepted:
                    await asyncio.sleep(0.05)          # no busy loop against a refusing gateway
        await asyncio.gather(*(worker() for _ in range(connections)))


async def sample_rows(gateway: MemoryGateway, http: aiohttp.ClientSession, sender: Sender,
                      rows: list[dict], done: asyncio.Event, every: float) -> None:
    """A row every ``every`` seconds until ``done``; printed as it is taken."""
    start, last = time.monotonic(), None
    while True:
        metrics = await gateway.metrics(http)
        now = time.monotonic()
        row = {"minute": (now - start) / 60, "rss": gateway.rss_mib(),
               "peak": gateway.peak_mib(), "accepted": sender.accepted,
               "delivered": total(metrics, "cmpp_messages_final_total", status="delivered"),
               "backlog": total(metrics, "cmpp_store_messages", status="accepted")
               + total(metrics, "cmpp_store_messages", status="submitted"),
               "keys": total(metrics, "cmpp_api_repeat_keys"), "at": now}
        if last is not None:
            span = now - last["at"]
            row["accept_rate"] = (row["accepted"] - last["accepted"]) / span
            row["deliver_rate"] = (row["delivered"] - last["delivered"]) / span
            rows.append(row)
            print(f"{row['minute']:6.2f} min  RSS {row['rss']:6.1f} MiB  peak "
                  f"{row['peak']:6.1f} MiB  accepted {row['accept_rate']:8.0f}/s  delivered "
                  f"{row['deliver_rate']:7.0f}/s  backlog {row['backlog']:10.0f}  repeat keys "
                  f"{row['keys']:9.0f}", flush=True)
        last = row
        try:
            await asyncio.wait_for(done.wait(), every)
            return
        except TimeoutError:
            pass


async def speed(args, directory: Path) -> tuple[bool, str]:
    """Phase 1: full speed for ``--minutes``; the verdict on the peak and the RSS trend."""
    simulator = ServerProcess("simulator")
    gateway = MemoryGateway(directory, simulator.port)
    rows: list[dict] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            await gateway.ready(http)
            sender, done = Sender(http, gateway, args.batch_size), asyncio.Event()
            sampler = asyncio.create_task(sample_rows(gateway, http, sender, rows, done,
                                                       args.sample))
            load = asyncio.create_task(sender.run(args.connections))
            await asyncio.sleep(args.minutes * 60)
            sender.stop = True
            await load
            done.set()
            await sampler
            peak = gateway.peak_mib()
    finally:
        gateway.stop()
        simulator.stop()
    after = [(r["minute"], r["rss"]) for r in rows if r["minute"] >= args.minutes / 3]
    trend_ok, trend = judge(Rule("rss", "MiB", 0.10, 8.0), after, 0.0) if len(after) >= 3 \
        else (False, "too few samples to judge the trend")
    accepted = statistics.median(r["accept_rate"] for r in rows)
    delivered = statistics.median(r["deliver_rate"] for r in rows)
    summary = (f"speed: {sender.accepted:,} accepted in {args.minutes:g} min (median "
               f"{accepted:,.0f}/s; {sender.refused:,} refused), delivered median "
               f"{delivered:,.0f}/s, backlog at the end {rows[-1]['backlog']:,.0f}; peak RSS "
               f"{peak:.1f} MiB (limit {args.limit:g})\n  {trend}")
    return peak < args.limit and trend_ok, summary


async def pending(args, directory: Path) -> tuple[bool, str]:
    """Phase 2: ``--pending`` accepted with the SMS center down, then drained after a
    restart; the verdict on both gateways' peaks."""
    peaks = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        gateway = MemoryGateway(directory, free_port())          # nothing listens there
        try:
            sender, done, rows = Sender(http, gateway, args.batch_size), asyncio.Event(), []
            await gateway.ready(http, path="/healthz")   # /readyz: 503, the center is down
            sampler = asyncio.create_task(sample_rows(gateway, http, sender, rows, done,
                                                       args.sample))
            started = time.monotonic()
            await sender.run(args.connections, limit=args.pending)
            took = time.monotonic() - started
            done.set()
            await sampler
            peaks.append(gateway.peak_mib())
        finally:
            gateway.stop()
        simulator = ServerProcess("simulator")
        gateway = MemoryGateway(directory, simulator.port)
        try:
            await gateway.ready(http)
            done, drained = asyncio.Event(), []
            sampler = asyncio.create_task(sample_rows(gateway, http, Sender(
                http, gateway, 1), drained, done, args.sample))
            await asyncio.sleep(args.drain)
            done.set()
            await sampler
            peaks.append(gateway.peak_mib())
        finally:
            gateway.stop()
            simulator.stop()
    carried = drained[-1]["delivered"] if drained else 0
    summary = (f"pending: {sender.accepted:,} accepted in {took:.0f} s with the SMS center "
               f"down, peak RSS {peaks[0]:.1f} MiB; restarted on that backlog, about "
               f"{carried:,.0f} delivered in {args.drain:g} s, peak RSS {peaks[1]:.1f} MiB "
               f"(limit {args.limit:g})")
    return max(peaks) < args.limit and sender.accepted >= args.pending, summary


def _load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the speed phase")
    parser.add_argument("--pending", type=int, default=1_000_000,
                        help="messages accepted while the SMS center is down")
    parser.add_argument("--drain", type=float, default=60.0,
                        help="seconds the restarted gateway drains the pending backlog")
    parser.add_argument("--connections", type=int, default=16, help="concurrent requests")
    parser.add_argument("--batch-size", type=int, default=1000, help="recipients per batch")
    parser.add_argument("--limit", type=float, default=300.0, help="peak RSS allowed, MiB")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between rows")
    parser.add_argument("--phases", default="speed,pending", help="speed, pending or both")
    args = parser.parse_args(argv)
    phases = {"speed": speed, "pending": pending}
    chosen = [name for name in args.phases.split(",") if name]
    if not chosen or set(chosen) - set(phases):
        parser.error(f"--phases: choose from {', '.join(phases)}")
    print(f"before: {_load_average()}", flush=True)
    verdicts = []
    for name in chosen:
        directory = Path(tempfile.mkdtemp(prefix=f"cmpp-memory-{name}-"))
        try:
            verdicts.append(asyncio.run(phases[name](args, directory)))
        except RuntimeError as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 2
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"after: {_load_average()}")
    for passed, summary in verdicts:
        print(("PASS " if passed else "FAIL ") + summary)
    return 0 if all(passed for passed, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
