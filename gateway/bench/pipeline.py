"""Pipeline benchmark: messages from the store to ``delivered``, durably, on each store backend,
and memory at 1M pending.

    python -m gateway.bench.pipeline [--messages 100000] [--rounds 3] [--pending 1000000]
                                     [--seconds 20] [--backends sqlite,postgresql]

1. End to end. ``--messages`` single-segment messages are inserted into a fresh store, then
   the gateway starts with 4 connections (window 16) to the simulator running in a second
   process, which answers every SUBMIT and sends a DELIVRD report for it. Measured: insert
   rate, and messages/s from the gateway's start until every message is ``delivered`` (each
   one: SUBMIT, SUBMIT_RESP recorded, report stored and matched, status derived, callback
   queued, DELIVER_RESP), and the CPU time per message of the gateway's process (its store
   thread included), of its event loop's thread and of its other threads (SQLite's writer),
   and of the database server. The stores: SQLite (WAL, synchronous=NORMAL, group commit:
   durable against a crash of the process) and PostgreSQL (a server started by the benchmark
   on this machine, fsync and synchronous_commit on: a commit is on disk before the gateway
   goes on; a fresh database each round). ``--rounds`` rounds, each running every
   backend in turn so that both see the same machine; the medians are the figures.
2. Receipt matching in the store alone, on each backend: N receipts, one store operation each,
   all queued at once (the writer merges what is queued together, as it does the receipt
   path's one operation a loop iteration), against N submitted segments.
3. Memory. In a fresh process, ``--pending`` messages go into a new store and the gateway runs
   against the simulator for ``--seconds`` with that backlog pending; printed: peak RSS of the
   process (ru_maxrss) and how many messages it carried meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from gateway.config import parse_config
from gateway.daemon import Gateway, GatewayOptions
from gateway.status import provider_tables
from gateway.store import NewMessage, Receipt, SegmentResult, create_store

from .postgres import LocalPostgres
from .session import ACCOUNT, HOST, SECRET, ServerProcess

BATCH = 5000
_databases = itertools.count(1)


class Backends:
    """Where each round's fresh store lives: a file in a temporary directory for SQLite, a new
    database on the benchmark's own PostgreSQL server (started on first use) for PostgreSQL."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.postgres: LocalPostgres | None = None

    def fresh(self, backend: str) -> str:
        """The store setting of a new, empty store of ``backend``."""
        number = next(_databases)
        if backend == "sqlite":
            return str(self.directory / f"bench-{number}.sqlite")
        if self.postgres is None:
            self.postgres = LocalPostgres(durable=True).start()
        asyncio.run(self._create(f"bench_{number}"))
        return self.postgres.url(f"bench_{number}")

    async def _create(self, name: str) -> None:
        db = await asyncpg.connect(self.postgres.url())
        try:
            await db.execute(f'CREATE DATABASE "{name}"')
        finally:
            await db.close()

    def database_cpu(self, backend: str) -> float:
        """The database server's CPU seconds so far (0 for SQLite: it runs in the gateway)."""
        return self.postgres.cpu_seconds() if backend == "postgresql" else 0.0

    def close(self) -> None:
        if self.postgres is not None:
            self.postgres.remove()


def gateway_config(store: str, port: int, connections: int = 4):
    return parse_config(
        f'[gateway]\nstore = "{store}"\ndrain_timeout = 5\n'
        f'[channels.bench]\nprovider = "default"\nhost = "{HOST}"\nport = {port}\n'
        f'account = "{ACCOUNT}"\npassword = "{SECRET}"\naccess_number = "106900001"\n'
        f"connections = {connections}\nwindow = 16\n")


async def fill(setting: str, count: int) -> float:
    """Insert ``count`` messages in batches; returns messages/s."""
    store = create_store(setting)
    await store.open()
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        await store.accept([NewMessage("bench", "bench", "13800138000", f"benchmark message {i}")
                            for i in range(first, min(count, first + BATCH))], now=time.time())
    rate = count / (time.perf_counter() - start)
    await store.close()
    return rate


async def end_to_end(port: int, count: int, setting: str, database_cpu) -> dict:
    """One round on the store ``setting`` names; ``database_cpu()`` reads the server's CPU."""
    config = gateway_config(setting, port)
    insert_rate = await fill(config.gateway.store, count)
    gateway = Gateway(config, GatewayOptions(serve_ops=False))
    start, cpu, db_cpu = time.perf_counter(), time.process_time(), database_cpu()
    loop_cpu = time.thread_time()             # this thread runs the gateway's event loop
    await gateway.start()
    while gateway.store.counts_snapshot().get("delivered", 0) < count:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    loop_cpu = time.thread_time() - loop_cpu
    cpu, db_cpu = time.process_time() - cpu, database_cpu() - db_cpu
    await gateway.stop()
    return {"insert": insert_rate, "end_to_end": count / elapsed, "elapsed": elapsed,
            "gateway_us": cpu / count * 1e6, "loop_us": loop_cpu / count * 1e6,
            "threads_us": (cpu - loop_cpu) / count * 1e6, "database_us": db_cpu / count * 1e6}


async def receipt_matching(count: int, setting: str) -> float:
    codes = provider_tables().for_provider("default")
    delivered = codes.classify("DELIVRD")
    store = create_store(setting)
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
        config = gateway_config(str(Path(directory) / "bench.sqlite"), port)
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
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    simulator = ServerProcess("simulator")
    with tempfile.TemporaryDirectory() as directory:
        stores = Backends(Path(directory))
        try:
            _end_to_end_report(simulator.port, args, backends, stores)
            for backend in backends:
                rate = asyncio.run(receipt_matching(args.matching, stores.fresh(backend)))
                print(f"receipt matching, {backend:<10}  {rate:10,.0f} receipts/s")
            if args.pending:
                _memory_report(simulator.port, args)
        finally:
            stores.close()
            simulator.stop()
    return 0


def _end_to_end_report(port: int, args, backends: list[str], stores: Backends) -> None:
    """Rounds of every backend in turn; per backend the medians, and PostgreSQL's rate as a
    share of SQLite's (target: at least half)."""
    rounds: dict[str, list[dict]] = {b: [] for b in backends}
    for _ in range(args.rounds):
        for backend in backends:
            setting = stores.fresh(backend)
            rounds[backend].append(asyncio.run(end_to_end(
                port, args.messages, setting, lambda b=backend: stores.database_cpu(b))))
    medians = {}
    for backend, results in rounds.items():
        rates = [r["end_to_end"] for r in results]
        medians[backend] = statistics.median(rates)
        insert = statistics.median(r["insert"] for r in results)
        gateway_us, loop_us, threads_us, database_us = (
            statistics.median(r[key] for r in results)
            for key in ("gateway_us", "loop_us", "threads_us", "database_us"))
        print(f"{backend}: insert into the store {insert:,.0f} messages/s; end to end to "
              f"'delivered' {medians[backend]:,.0f} messages/s, median of "
              f"{', '.join(f'{r:,.0f}' for r in rates)} ({args.messages:,} a round); "
              f"CPU a message: gateway {gateway_us:.0f} us (event loop {loop_us:.0f}, other "
              f"threads {threads_us:.0f}), database {database_us:.0f} us")
    if "sqlite" in medians and "postgresql" in medians:
        print(f"postgresql / sqlite end to end: {medians['postgresql'] / medians['sqlite']:.2f} "
              "(target >= 0.5)")


def _memory_report(port: int, args) -> None:
    memory = memory_at_backlog(port, args.pending, args.seconds)
    print(f"insert {args.pending:,} pending    {memory['insert']:10,.0f} messages/s")
    print(f"peak RSS with {args.pending:,} pending: {memory['peak_mib']:.0f} MiB "
          f"(target < 300), {memory['delivered']:,} delivered in {args.seconds:g} s")


if __name__ == "__main__":
    raise SystemExit(main())
