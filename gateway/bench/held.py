"""Held-reports benchmark: what status reports that match no message cost the pipeline.

    python -m gateway.bench.held [--messages 10000] [--held 0,100000,400000]

Every duplicate SUBMIT makes one such report (the ISMG reports the Msg_Id the gateway never
recorded), so a long-running gateway holds many. For each count N of ``--held``, in a fresh
process and a fresh store: N reports for Msg_Ids no segment has are stored (in batches of
5,000, through ``record_receipts``, as the receipt path stores them), then ``--messages``
single-segment messages are inserted and the gateway starts against the simulator (a second
process, 4 connections, window 16) and runs until every one is ``delivered``: the time of that
run is the figure. Then the gateway stops, a new one starts on the same file (a restart), and
``--messages`` more go through the same way. Printed per N: both times, the rate of each, and
the process's peak RSS (ru_maxrss, the whole child: store, gateway and the held reports).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from gateway.daemon import Gateway, GatewayOptions
from gateway.status import provider_tables
from gateway.store import Receipt, SqliteStore

from .pipeline import fill, gateway_config, in_fresh_process
from .session import ServerProcess

BATCH = 5000
UNKNOWN_MSG_ID = 1 << 62          # far from the simulator's Msg_Ids (time bits at the top)


async def hold(path: str, count: int) -> float:
    """Store ``count`` reports whose Msg_Ids match nothing; returns the seconds it took."""
    undeliverable = provider_tables().for_provider("default").classify("UNDELIV")
    store = SqliteStore(path)
    await store.open()
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        await store.record_receipts([
            Receipt("bench", "bench#0", UNKNOWN_MSG_ID + i, UNKNOWN_MSG_ID + i, undeliverable,
                    received_at=time.time())
            for i in range(first, min(count, first + BATCH))])
    elapsed = time.perf_counter() - start
    await store.close()
    return elapsed


async def through(config, count: int, delivered_before: int) -> float:
    """Start a gateway on the store, wait until ``count`` more messages are delivered, stop;
    returns the seconds from start to the last one delivered."""
    gateway = Gateway(config, GatewayOptions(serve_ops=False))
    start = time.perf_counter()
    await gateway.start()
    while gateway.store.counts_snapshot().get("delivered", 0) < delivered_before + count:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    await gateway.stop()
    return elapsed


async def _measure(port: int, held: int, messages: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        config = gateway_config(Path(directory), port)
        holding = await hold(config.gateway.store, held)
        await fill(config.gateway.store, messages)
        first = await through(config, messages, 0)
        await fill(config.gateway.store, messages)
        restarted = await through(config, messages, messages)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"held": held, "holding": holding, "first": first, "restarted": restarted,
            "peak_mib": peak}


def measure(port: int, held: int, messages: int) -> dict:
    """One count in a fresh process, so that peak RSS is its own."""
    return in_fresh_process(_measure, port, held, messages)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--held", default="0,100000,400000",
                        help="comma-separated counts of held reports (default 0,100000,400000)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.held.split(",")]
    simulator = ServerProcess("simulator")
    try:
        print(f"{'held':>9} {'storing them':>13} {'run':>16} {'after restart':>22} {'peak RSS':>9}")
        for held in counts:
            r = measure(simulator.port, held, args.messages)
            first, restarted = args.messages / r["first"], args.messages / r["restarted"]
            print(f"{held:>9,} {r['holding']:>11.1f} s {r['first']:>6.2f} s {first:>6,.0f}/s"
                  f" {r['restarted']:>12.2f} s {restarted:>6,.0f}/s {r['peak_mib']:>5.0f} MiB",
                  flush=True)
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
