"""Pipeline benchmark: messages from the store to ``delivered``, durably, and memory at 1M pending.

    python -m gateway.bench.pipeline [--messages 100000] [--rounds 3] [--pending 1000000]
                                          [--seconds 20]

1. End to end. ``--messages`` single-segment messages are inserted into a fresh store (SQLite,
   WAL, synchronous=NORMAL, group commit: durable against a crash of the process), then the
   gateway starts with 4 connections (window 16) to the simulator running in a second process,
   which answers every SUBMIT and sends a DELIVRD report for it. Measured: insert rate, and
   messages/s from the gateway's start until every message is ``delivered`` (each one: SUBMIT,
   SUBMIT_RESP recorded, report stored and matched, status derived, callback queued, DELIVER_RESP).
   ``--rounds`` fresh stores, one after another; the median is the figure (the machine is shared).
2. Receipt matching in the store alone: N receipts, one store operation each, all queued at
   once (the writer merges what is queued together, as it does the receipt path's one operation
   a loop iteration), against N submitted segments.
3. Memory. In a fresh process, ``--pending`` messages go into a new store and the gateway runs
   against the simulator for ``--seconds`` with that backlog pending; printed: peak RSS of the
   process (ru_maxrss) and how many messages it carried meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

from gateway.config import parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.status import provider_tables
from gateway.store import NewMessage, Receipt, SegmentResult, SqliteStore

from .session import ACCOUNT, HOST, SECRET, ServerProcess

BATCH = 5000


def gateway_config(directory: Path, port: int, connections: int = 4):
    return parse_config(
        f'[gateway]\nstore = "{directory / "bench.sqlite"}"\ndrain_timeout = 5\n'
        f'[channels.bench]\nprovider = "default"\nhost = "{HOST}"\nport = {port}\n'
        f'account = "{ACCOUNT}"\npassword = "{SECRET}"\naccess_number = "106900001"\n'
        f"connections = {connections}\nwindow = 16\n")


async def fill(path: str, count: int) -> float:
    """Insert ``count`` messages in batches; returns messages/s."""
    store = SqliteStore(path)
    await store.open()
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        await store.accept([NewMessage("bench", "bench", "13800138000", f"benchmark message {i}")
                            for i in range(first, min(count, first + BATCH))], now=time.time())
    rate = count / (time.perf_counter() - start)
    await store.close()
    return rate


async def end_to_end(port: int, count: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        config = gateway_config(Path(directory), port)
        insert_rate = await fill(config.gateway.store, count)
        gateway = Gateway(config, GatewayOptions(serve_ops=False))
        start = time.perf_counter()
        await gateway.start()
        while gateway.store.counts_snapshot().get("delivered", 0) < count:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        await gateway.stop()
    return {"insert": insert_rate, "end_to_end": count / elapsed, "elapsed": elapsed}


async def receipt_matching(count: int) -> float:
    codes = provider_tables().for_provider("default")
    delivered = codes.classify("DELIVRD")
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(str(Path(directory) / "match.sqlite"))
        await store.open()
        for first in range(0, count, BATCH):
            ids = [a.id for a in await store.accept(
                [NewMessage("bench", "bench", "13800138000", "x")
                 for _ in range(first, min(count, first + BATCH))], now=0.0)]
            await store.record_submits([SegmentResult(i, "bench", 1, 1, 0, 10_000 + i, at=1.0)
                                        for i in ids], "default")
        start = time.perf_counter()
        pending = [store.record_receipts([Receipt("bench", "bench#0", i, 10_000 + i, delivered,
                                                  received_at=2.0)])
                   for i in range(1, count + 1)]
        await asyncio.gather(*pending)
        rate = count / (time.perf_counter() - start)
        assert store.counts_snapshot()["delivered"] == count
        await store.close()
    return rate


async def _memory(port: int, pending: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        config = gateway_config(Path(directory), port)
        insert_rate = await fill(config.gateway.store, pending)
        gateway = Gateway(config, GatewayOptions(serve_ops=False))
        await gateway.start()
        await asyncio.sleep(seconds)
        delivered = gateway.store.counts_snapshot().get("delivered", 0)
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await gateway.stop()
    return {"insert": insert_rate, "delivered": delivered, "peak_mib": peak_kib / 1024}


def memory_at_backlog(port: int, pending: int, seconds: float) -> dict:
    return in_fresh_process(_memory, port, pending, seconds)


def in_fresh_process(coroutine_function, *args):
    """``asyncio.run(coroutine_function(*args))`` in a new (spawned) process, so that its
    peak RSS is its own; returns what it returned (it must pickle)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_child, args=(coroutine_function, args, child))
    process.start()
    result = parent.recv()
    process.join()
    return result


def _child(coroutine_function, args: tuple, out) -> None:
    out.send(asyncio.run(coroutine_function(*args)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--matching", type=int, default=50_000)
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    simulator = ServerProcess("simulator")
    try:
        rounds = [asyncio.run(end_to_end(simulator.port, args.messages))
                  for _ in range(args.rounds)]
        inserts = sorted(r["insert"] for r in rounds)
        rates = [r["end_to_end"] for r in rounds]
        print(f"insert into the store      {statistics.median(inserts):10,.0f} messages/s")
        print(f"end to end to 'delivered'  {statistics.median(rates):10,.0f} messages/s, median "
              f"of {', '.join(f'{r:,.0f}' for r in rates)} ({args.messages:,} a round; "
              "target >= 10,000)")
        rate = asyncio.run(receipt_matching(args.matching))
        print(f"receipt matching (store)   {rate:10,.0f} receipts/s")
        memory = memory_at_backlog(simulator.port, args.pending, args.seconds)
        print(f"insert {args.pending:,} pending    {memory['insert']:10,.0f} messages/s")
        print(f"peak RSS with {args.pending:,} pending: {memory['peak_mib']:.0f} MiB "
              f"(target < 300), {memory['delivered']:,} delivered in {args.seconds:g} s")
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
