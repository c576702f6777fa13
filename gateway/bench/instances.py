"""Instances benchmark: one gateway process against two on one PostgreSQL store, draining the
same backlog end to end (store to ``delivered``, durable).

    python -m gateway.bench.instances [--messages 50000] [--rounds 3] [--connections 4]
                                      [--tps N] [--report-delay SECONDS]

Each round makes a fresh database on the benchmark's own PostgreSQL server (fsync and
synchronous_commit on, as in gateway.bench.pipeline) and starts the gateways as separate
processes (``cmpp-gateway run``) with one configuration: one channel of ``--connections``
connections (window 16, ``--tps`` if given) to the ISMG simulator, itself in a process of its
own, which answers every SUBMIT and sends a DELIVRD report for it (``--report-delay`` after it,
on any connection of the account: with two gateways, half the reports reach the gateway that
did not send the SUBMIT). Once every gateway is ready and the channel's slots are shared out
(two gateways on 4 slots: 2 each, as /readyz says), ``--messages`` single-segment messages are
accepted in one transaction, so that they become pending at one instant, and the round ends
when none is left ``accepted`` or ``submitted``.

Measured: messages/s from the first SUBMIT to the last ``delivered`` (the store's own times:
``submitted_at`` and ``status_at``); the CPU time per message, from the commit of the backlog
to the end, of each gateway process and of the database server; the slots each gateway held;
each one's store transactions a second and their mean time (its ``cmpp_store_commit_seconds``).
Rounds interleave (one, two, one, two, ...) so that both see the same machine; the medians are
the figures, and the ratio two / one of the rates (target: at least 1). The machine's load
average is printed with them: compare only figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg

from gateway.store import NewMessage, create_store

from .pipeline import Backends
from .session import ACCOUNT, HOST, SECRET, ServerProcess, cpu_seconds
from .soak_gateway import free_port, stop_gateway

READY_TIMEOUT = 60.0       # seconds for the gateways to log in and share the slots out
POLL = 0.1                 # seconds between two looks at what is left to deliver


def config_text(store: str, sim_port: int, api_port: int, ops_port: int, connections: int,
                tps: int | None) -> str:
    pace = f"tps = {tps}\n" if tps else ""
    return (f'[gateway]\nstore = "{store}"\napi_listen = "{HOST}:{api_port}"\n'
            f'metrics_listen = "{HOST}:{ops_port}"\ndrain_timeout = 5\n'
            f'[channels.bench]\nprovider = "default"\nhost = "{HOST}"\nport = {sim_port}\n'
            f'account = "{ACCOUNT}"\npassword = "{SECRET}"\naccess_number = "106900001"\n'
            f"connections = {connections}\nwindow = 16\n{pace}")


class GatewayProcess:
    """One ``cmpp-gateway run`` on a configuration of its own; its log in ``directory``."""

    def __init__(self, directory: Path, index: int, store: str, sim_port: int,
                 connections: int, tps: int | None) -> None:
        self.ops_port = free_port()
        config = directory / f"gateway-{index}.toml"
        config.write_text(config_text(store, sim_port, free_port(), self.ops_port,
                                      connections, tps))
        config.chmod(0o600)
        self.log = open(directory / f"gateway-{index}.log", "ab")     # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def readiness(self) -> tuple[bool, dict]:
        """(ready, /readyz's detail); (False, {}) while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.ops_port}/readyz",
                                        timeout=2) as answer:
                return answer.status == 200, json.load(answer)
        except urllib.error.HTTPError as error:
            return False, json.load(error)
        except (OSError, ValueError):
            return False, {}

    def slots(self) -> list[int]:
        """The channel's slots it holds now."""
        return self.readiness()[1].get("cluster", {}).get("slots", {}).get("bench", [])

    def commits(self) -> tuple[float, float]:
        """(transactions, seconds in them) of its store so far, from its /metrics."""
        with urllib.request.urlopen(f"http://{HOST}:{self.ops_port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        found = dict(line.split() for line in text.splitlines()
                     if line.startswith(("cmpp_store_commit_seconds_count ",
                                         "cmpp_store_commit_seconds_sum ")))
        return (float(found["cmpp_store_commit_seconds_count"]),
                float(found["cmpp_store_commit_seconds_sum"]))

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid) or 0.0

    def stop(self) -> None:
        stop_gateway(self.process)
        self.log.close()


def wait_settled(gateways: list[GatewayProcess], connections: int) -> list[list[int]]:
    """Wait until every gateway is ready and the slots are shared out evenly (each within one
    of another's, all of them held); returns each one's slots."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ready = [g.readiness() for g in gateways]
        held = [d.get("cluster", {}).get("slots", {}).get("bench", []) for _, d in ready]
        counts = [len(s) for s in held]
        if all(r for r, _ in ready) and sum(counts) == connections and \
                max(counts) - min(counts) <= 1:
            return held
        time.sleep(0.2)
    raise RuntimeError(f"the gateways did not settle in {READY_TIMEOUT:g} s: see their logs")


async def backlog(setting: str, count: int) -> None:
    """Accept ``count`` messages in one call: one transaction, pending at one instant."""
    store = create_store(setting)
    await store.open()
    try:
        await store.accept([NewMessage("bench", "bench", "13800138000", f"benchmark message {i}")
                            for i in range(count)], now=time.time())
    finally:
        await store.close()


async def wait_delivered(setting: str) -> tuple[int, float]:
    """Wait until no message is left to submit or report on (the partial indexes on
    ``accepted`` and ``submitted`` make each look cheap); returns (delivered, seconds from
    the first SUBMIT to the last status)."""
    db = await asyncpg.connect(setting)
    try:
        while await db.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE status = "
                                "'accepted') OR EXISTS (SELECT 1 FROM messages WHERE status = "
                                "'submitted')"):
            await asyncio.sleep(POLL)
        row = await db.fetchrow("SELECT count(*) FILTER (WHERE status = 'delivered') AS n, "
                                "max(status_at) - min(submitted_at) AS span FROM messages")
        return row["n"], row["span"]
    finally:
        await db.close()


def drain(count: int, instances: int, stores: Backends, sim_port: int, connections: int,
          tps: int | None) -> dict:
    """One round: ``instances`` gateway processes drain ``count`` messages."""
    setting = stores.fresh("postgresql")
    with tempfile.TemporaryDirectory() as directory:
        gateways = [GatewayProcess(Path(directory), i, setting, sim_port, connections, tps)
                    for i in range(instances)]
        try:
            slots = wait_settled(gateways, connections)
            asyncio.run(backlog(setting, count))
            cpu, db_cpu = [g.cpu() for g in gateways], stores.database_cpu("postgresql")
            commits = [g.commits() for g in gateways]
            delivered, span = asyncio.run(wait_delivered(setting))
            cpu = [g.cpu() - c for g, c in zip(gateways, cpu)]
            commits = [tuple(b - a for a, b in zip(before, g.commits()))
                       for g, before in zip(gateways, commits)]
            db_cpu = stores.database_cpu("postgresql") - db_cpu
            slots_after = [g.slots() for g in gateways]
        finally:
            for g in gateways:
                g.stop()
    if delivered != count:
        raise RuntimeError(f"{delivered:,} of {count:,} messages delivered")
    return {"rate": count / span, "gateway_us": [c / count * 1e6 for c in cpu],
            "database_us": db_cpu / count * 1e6, "slots": slots, "slots_after": slots_after,
            "commits": [n / span for n, _ in commits],
            "commit_ms": [seconds / n * 1e3 if n else 0.0 for n, seconds in commits]}


def summary(instances: int, results: list[dict]) -> str:
    rates = [r["rate"] for r in results]
    each = [statistics.median(r["gateway_us"][i] for r in results) for i in range(instances)]
    database = statistics.median(r["database_us"] for r in results)
    slots = "; ".join(" ".join(str(len(s)) for s in r["slots"]) for r in results)
    moved = sum(r["slots"] != r["slots_after"] for r in results)
    commits = [statistics.median(r["commits"][i] for r in results) for i in range(instances)]
    commit_ms = [statistics.median(r["commit_ms"][i] for r in results) for i in range(instances)]
    return (f"{instances} gateway(s): {statistics.median(rates):,.0f} messages/s end to end, "
            f"median of {', '.join(f'{r:,.0f}' for r in rates)}; CPU a message: gateway "
            f"{' + '.join(f'{u:.0f}' for u in each)} us, database {database:.0f} us; "
            f"store transactions of each: {' + '.join(f'{c:,.0f}' for c in commits)} a second, "
            f"{' and '.join(f'{m:.1f}' for m in commit_ms)} ms each; "
            f"slots held by each, per round: {slots}"
            + (f" ({moved} round(s) with slots moved meanwhile)" if moved else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--tps", type=int, default=None, help="the channel's tps (none: no pacing)")
    parser.add_argument("--report-delay", type=float, default=0.0,
                        help="seconds from a SUBMIT to its status report")
    args = parser.parse_args(argv)
    simulator = ServerProcess("simulator", args.report_delay)
    results: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as directory:
        stores = Backends(Path(directory))
        try:
            for _ in range(args.rounds):
                for instances, rounds in results.items():
                    rounds.append(drain(args.messages, instances, stores, simulator.port,
                                        args.connections, args.tps))
        finally:
            stores.close()
            simulator.stop()
    for instances, rounds in results.items():
        print(summary(instances, rounds))
    one, two = (statistics.median(r["rate"] for r in results[n]) for n in (1, 2))
    print(f"two / one end to end: {two / one:.2f} (target >= 1); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
