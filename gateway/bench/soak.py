"""Soak benchmark: the gateway at a steady rate for an hour, with trouble mixed in, and a
verdict on whether anything keeps growing.

    python -m gateway.bench.soak [--minutes 60] [--warmup 10] [--rate 200] [--sample 60]
                                 [--retention 300] [--report-timeout 120]
                                 [--unmatched-timeout 60] [--idempotency-window 120]

The gateway runs as its own process (``python -m gateway.cli run``, logging to a file in the
run's directory) with the retention, report timeout, unmatched-report timeout and idempotency
window set short enough to act within minutes, against the simulator and a callback receiver
that run in this process, and this process sends it ``--rate`` messages a second over its
HTTP API (new texts to 50,000 numbers in turn): 80% in batch requests of 20, 20% as single
sends, 10% of the singles with an Idempotency-Key of which a third are sent twice (the second is
replayed), 1% of them repeats of the same text to the same number (refused, 50034). Mixed in:

- duplicates: for 5 s of every minute the simulator sends every DELIVER twice;
- unmatched reports: 5% of the rate as reports for Msg_Ids the gateway never had;
- reconnects: every 30 s the simulator drops one of the gateway's connections, abruptly (the
  SUBMITs in flight are sent again, and the reports of those that had arrived never match);
- MO: one a second, every fifth long (several parts), to the app's MO callback;
- callback failures: the receiver answers 500 to 10% of callbacks (they are retried).

Every ``--sample`` seconds it prints one row: the gateway process's RSS, the store's size on
disk (file and write-ahead log), the store's mean transaction (commit) time over the interval
and its 99th percentile (an upper bucket bound of ``cmpp_store_commit_seconds``), the
end-to-end rate (status callbacks the receiver acknowledged per second: a message accepted,
submitted, reported, its callback sent), what the API accepted per second, the backlog
(messages accepted or submitted), unmatched reports held, rows pruned and unmatched reports
expired in the interval.

The verdict. Only samples after ``--warmup`` minutes count (the store grows until the first
messages reach the retention time and the sweeper, every 60 s, starts removing them). For each
series the slope is the Theil-Sen estimate, the median of the slopes between every pair of
samples, which a few outliers (another process taking the CPU for a minute) cannot move; the
growth is that slope times the span of the samples. A series fails when its growth exceeds
its tolerance: RSS and store size 10% of their median (at least 8 MiB), commit time 50% of
its median (at least 0.5 ms), backlog 50% of its median (at least 5 s of the rate). The
end-to-end rate fails when it falls by more than 10% of the offered rate (a rate that rises
is no problem). Exit status 0 when every series passes, 1 when one fails, 2 when the run
could not start or was too short to judge (fewer than 3 samples after the warm-up).

This module holds the receiver, the load, the faults, the sampler and the run; the gateway's
process, its configuration and the reading of its ``/metrics`` are in
``gateway.bench.soak_gateway``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.sim import Account, Simulator, SimulatorConfig

from .session import HOST
from .soak_gateway import (
    ACCOUNT,
    APP_KEY,
    MASTER_SECRET,
    SECRET,
    GatewayProcess,
    free_port,
    p99_ms,
    total,
)
from .trend import verdict

BATCH = 20
SINGLES = 0.2               # of the rate, sent one by one; the rest in batches of BATCH
TICK = 0.1
RECIPIENTS = 50_000


# ----------------------------------------------------------------------------- the receiver

class Receiver:
    """The app's callback URLs: counts what it acknowledges, fails a share with HTTP 500."""

    def __init__(self, fail: float, seed: int) -> None:
        self.fail, self.random = fail, random.Random(seed)
        self.status = self.mo = self.failed = self.repeated = 0
        self._seen: dict[str, None] = {}
        self._runner: web.AppRunner | None = None

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/status", self.on_status)
        app.router.add_post("/mo", self.on_mo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refuse(self) -> bool:
        if self.random.random() < self.fail:
            self.failed += 1
            return True
        return False

    async def on_status(self, request: web.Request) -> web.Response:
        await request.read()
        if self._refuse():
            return web.Response(status=500)
        event = request.headers.get("X-CMPP-Event-Id", "")
        if event in self._seen:
            self.repeated += 1
        else:
            self._seen[event] = None
            if len(self._seen) > 100_000:          # the ids of recent events only
                del self._seen[next(iter(self._seen))]
            self.status += 1
        return web.Response(text="ok")

    async def on_mo(self, request: web.Request) -> web.Response:
        await request.read()
        if self._refuse():
            return web.Response(status=500)
        self.mo += 1
        return web.Response(text="ok")


# ----------------------------------------------------------------------------- the load

@dataclass
class Load:
    """Sends ``rate`` messages a second to the API; counts the answers."""

    http: aiohttp.ClientSession
    base: str
    rate: float
    random: random.Random
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("accepted", "replayed", "repeat", "refused", "server_error", "failed", "skipped"), 0))
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(10_000_000))
    _inflight: set = field(default_factory=set)

    async def run(self) -> None:
        """Every tick, what the rate owes: a batch request once 20 are owed (80% of the rate),
        single sends for the rest."""
        batched = single = 0.0
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            batched += self.rate * (1 - SINGLES) * TICK
            single += self.rate * SINGLES * TICK
            while batched >= BATCH:
                self._spawn(self._batch([self._recipient() for _ in range(BATCH)]), BATCH)
                batched -= BATCH
            while single >= 1:
                self._spawn(self._single(), 1)
                single -= 1
            next_tick += TICK
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    def _spawn(self, coroutine, messages: int) -> None:
        if len(self._inflight) >= 256:          # the gateway does not keep up: say so
            coroutine.close()
            self.outcomes["skipped"] += messages
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _recipient(self) -> dict:
        """A new text to one of ``RECIPIENTS`` numbers in turn: a real app's customers come
        back, and the API keeps a little per number (UDH references, up to 200,000 numbers)."""
        n = next(self._numbers)
        return {"mobile": f"138{n % RECIPIENTS:08d}", "temp_para": {"order": str(n)}}

    async def _single(self) -> None:
        body, roll = self._recipient(), self.random.random()
        if roll < 0.01:                                      # the same again: 50034
            await self._post("/v1/messages", body)
            await self._post("/v1/messages", body)
            return
        headers = {}
        if roll < 0.11:
            headers["Idempotency-Key"] = f"soak-{body['temp_para']['order']}"
        await self._post("/v1/messages", body, headers)
        if roll < 0.11 and roll >= 0.08:                     # a third of them, twice
            await self._post("/v1/messages", body, headers, replay=True)

    async def _batch(self, recipients: list[dict]) -> None:
        await self._post("/v1/messages/batch", {"temp_id": 1, "recipients": recipients},
                         count=len(recipients))

    async def _post(self, path: str, body: dict, headers=None, replay=False, count=1) -> None:
        body = {"temp_id": 1, **body}
        try:
            async with self.http.post(self.base + path, json=body, headers=headers) as r:
                answer = await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self.outcomes["failed"] += count
            return
        if r.status == 200:
            key = "replayed" if replay else "accepted"
            self.outcomes[key] += answer.get("success_count", count) if count > 1 else count
        elif r.status >= 500:
            self.outcomes["server_error"] += count
        elif answer.get("error", {}).get("code") == 50034:
            self.outcomes["repeat"] += count
        else:
            self.outcomes["refused"] += count


async def inject_faults(sim: Simulator, rate: float, rnd: random.Random) -> None:
    """Unmatched reports, dropped connections, duplicated DELIVERs and MO, on a schedule."""
    for second in itertools.count(1):
        await asyncio.sleep(1.0)
        for _ in range(max(1, int(rate * 0.05))):
            sim.send_report(ACCOUNT, rnd.getrandbits(63) | 1 << 62, "DELIVRD",
                            f"139{rnd.randrange(10**8):08d}")
        sim.config.faults.duplicate_delivers = second % 60 < 5
        if second % 30 == 0 and sim.connections(ACCOUNT):
            sim.kill(rnd.choice(sim.connections(ACCOUNT)))
        text = "回复" + ("很长的上行短信内容" * 12 if second % 5 == 0 else "好的")
        sim.send_mo(ACCOUNT, f"8613{rnd.randrange(10**9):09d}", "10690001", text)


# ----------------------------------------------------------------------------- sampling

@dataclass
class Sampler:
    gateway: GatewayProcess
    receiver: Receiver
    load: Load
    started: float
    _last: dict = field(default_factory=dict)
    _at: float = 0.0
    _status: int = 0
    _accepted: int = 0

    async def sample(self, http: aiohttp.ClientSession) -> dict:
        now, metrics = time.monotonic(), await self.gateway.metrics(http)
        last, seconds = self._last or metrics, (now - self._at) if self._last else 0.0
        commits = total(metrics, "cmpp_store_commit_seconds_count") - \
            total(last, "cmpp_store_commit_seconds_count")
        commit_time = total(metrics, "cmpp_store_commit_seconds_sum") - \
            total(last, "cmpp_store_commit_seconds_sum")
        row = {
            "minute": (now - self.started) / 60, "rss": self.gateway.rss_mib(),
            "store": self.gateway.store_mib(),
            "commit_ms": commit_time / commits * 1000 if commits else 0.0,
            "commit_p99_ms": p99_ms(last, metrics),
            "e2e": (self.receiver.status - self._status) / seconds if seconds else 0.0,
            "accepted": (self.load.outcomes["accepted"] - self._accepted) / seconds
            if seconds else 0.0,
            "backlog": total(metrics, "cmpp_store_messages", status="accepted") +
            total(metrics, "cmpp_store_messages", status="submitted"),
            "held": total(metrics, "cmpp_unmatched_receipts"),
            "pruned": total(metrics, "cmpp_store_pruned_rows_total") -
            total(last, "cmpp_store_pruned_rows_total"),
            "expired": total(metrics, "cmpp_unmatched_receipts_expired_total") -
            total(last, "cmpp_unmatched_receipts_expired_total"),
        }
        self._last, self._at = metrics, now
        self._status, self._accepted = self.receiver.status, self.load.outcomes["accepted"]
        return row


HEADER = (f"{'min':>6} {'RSS MiB':>8} {'store MiB':>9} {'commit ms':>9} {'p99 ms':>7} "
          f"{'e2e/s':>7} {'accept/s':>8} {'backlog':>8} {'held':>7} {'pruned':>8} {'expired':>7}")


def line(row: dict) -> str:
    return (f"{row['minute']:>6.1f} {row['rss']:>8.1f} {row['store']:>9.1f} "
            f"{row['commit_ms']:>9.2f} {row['commit_p99_ms']:>7.1f} {row['e2e']:>7.1f} "
            f"{row['accepted']:>8.1f} {row['backlog']:>8.0f} {row['held']:>7.0f} "
            f"{row['pruned']:>8.0f} {row['expired']:>7.0f}")


# ----------------------------------------------------------------------------- the run

def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="minutes left out of the verdict (default 10)")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s (default 200)")
    parser.add_argument("--sample", type=float, default=60.0,
                        help="seconds between rows (default 60)")
    parser.add_argument("--retention", type=float, default=300.0)
    parser.add_argument("--report-timeout", type=float, default=120.0)
    parser.add_argument("--unmatched-timeout", type=float, default=60.0)
    parser.add_argument("--idempotency-window", type=float, default=120.0)
    parser.add_argument("--callback-fail", type=float, default=0.10,
                        help="share of callbacks answered 500 (default 0.1)")
    parser.add_argument("--seed", type=int, default=12)
    return parser.parse_args(argv)


async def soak(args: argparse.Namespace, out=sys.stdout) -> int:
    rnd = random.Random(args.seed)
    sim = Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, max_connections=8)],
                                    report_delay=0.5, record=False, seed=args.seed,
                                    stats={"DELIVRD": 0.95, "UNDELIV": 0.05}))
    receiver = Receiver(args.callback_fail, args.seed)
    receiver_port = free_port()
    await sim.start(HOST, 0)
    await receiver.start(receiver_port)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        gateway = GatewayProcess(Path(directory), {
            "sim": sim.address[1], "receiver": receiver_port, "retention": args.retention,
            "report_timeout": args.report_timeout, "unmatched_timeout": args.unmatched_timeout,
            "idempotency_window": args.idempotency_window,
            "callback_retry_for": max(args.report_timeout, 60.0)})
        try:
            return await _drive(args, gateway, sim, receiver, rnd, out)
        finally:
            status = gateway.stop()
            print(f"gateway stopped with status {status}; {gateway.errors()} error line(s) "
                  "in its log", file=out)
            await receiver.stop()
            await sim.stop()


async def _drive(args, gateway, sim, receiver, rnd, out) -> int:
    auth = aiohttp.encode_basic_auth(APP_KEY, MASTER_SECRET)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": auth},
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            await gateway.ready(http)
        except RuntimeError as error:
            print(error, file=out)
            return 2
        load = Load(http, f"http://{HOST}:{gateway.api}", args.rate, rnd)
        sampler = Sampler(gateway, receiver, load, time.monotonic())
        tasks = [asyncio.create_task(load.run()),
                 asyncio.create_task(inject_faults(sim, args.rate, rnd))]
        samples = [await sampler.sample(http)]
        print(f"soak: {args.rate:g} msg/s for {args.minutes:g} min, retention "
              f"{args.retention:g} s, report timeout {args.report_timeout:g} s, unmatched "
              f"{args.unmatched_timeout:g} s, idempotency {args.idempotency_window:g} s",
              file=out)
        print(HEADER, file=out, flush=True)
        try:
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                await asyncio.sleep(min(args.sample, max(0.0, end - time.monotonic())))
                samples.append(await sampler.sample(http))
                print(line(samples[-1]), file=out, flush=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        print("API answers: " + ", ".join(f"{k} {v}" for k, v in load.outcomes.items()) +
              f"; callbacks acknowledged: status {receiver.status}, MO {receiver.mo}, "
              f"failed on purpose {receiver.failed}, repeated {receiver.repeated}", file=out)
        return verdict(samples, args.warmup, args.rate, out)


def main(argv=None) -> int:
    return asyncio.run(soak(arguments(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
