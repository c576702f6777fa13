"""Pool benchmark: a ChannelPool of 4 connections against its framing-only ceiling.

    python -m gateway.bench.pool [--seconds 5] [--rounds 3] [--connections 4] [--window 16]

Ours: a ``gateway.channel.pool.ChannelPool`` (no TPS limit) logged in to the ISMG simulator
running in a second process, driven by connections x window coroutines that each loop
``await pool.submit(Submit(...))`` with a freshly built single-segment SUBMIT (one destination,
70 UCS2 characters, no report). Everything counts: the pool's choice of connection, the
sessions, the codec both ways, the simulator in its process, loopback TCP.

Ceiling: the same number of connections and coroutines over the framing-only client and server
of ``gateway.bench.session`` (frames of the same sizes, one Future per request, the same
write coalescing); each coroutine stays on one connection, which is the best case for them.

Rounds interleave so both see the same noise; medians are printed, then the ratio ours/ceiling
(targets: at least 20,000 submits/s, and at least 0.25 of the ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics

import cmpp
from gateway.channel import ChannelPool

from .options import channel_config
from .session import (
    ACCOUNT,
    HOST,
    RESP_SIZE,
    SECRET,
    SUBMIT_FIELDS,
    SUBMIT_SIZE,
    FramingClient,
    ServerProcess,
    _format,
    drive,
)


def pool_channel(port: int, connections: int, window: int):
    return channel_config(HOST, port, ACCOUNT, SECRET, access_number="106900001",
                          connections=connections, window=window, provider="bench")


async def ceiling_round(server: ServerProcess, connections: int, window: int,
                        seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    opened = [await loop.create_connection(FramingClient, HOST, server.port)
              for _ in range(connections)]
    clients = itertools.cycle([client for _, client in opened])
    senders = {}

    def send():
        task = asyncio.current_task()
        if task not in senders:                       # each coroutine keeps its connection
            senders[task] = next(clients)
        return senders[task].request()
    try:
        return await drive(send, connections * window, seconds, server)
    finally:
        for transport, _ in opened:
            transport.close()


async def pool_round(server: ServerProcess, connections: int, window: int, seconds: float) -> dict:
    pool = ChannelPool(pool_channel(server.port, connections, window))
    await pool.start()
    try:
        await pool.wait_ready()
        return await drive(lambda: pool.submit(cmpp.Submit(**SUBMIT_FIELDS)),
                           connections * window, seconds, server)
    finally:
        await pool.close()


async def run_rounds(framing, simulator, connections, window, seconds, rounds):
    kinds = {"ceiling": lambda: ceiling_round(framing, connections, window, seconds),
             "pool": lambda: pool_round(simulator, connections, window, seconds)}
    results = {name: [] for name in kinds}
    for number in range(1, rounds + 1):
        for name, run_round in kinds.items():
            results[name].append(result := await run_round())
            print(f"round {number} {name:8}" + _format(result), flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args(argv)
    print(f"{args.connections} connections, window {args.window}, SUBMIT {SUBMIT_SIZE} B, "
          f"SUBMIT_RESP {RESP_SIZE} B, {args.rounds} x {args.seconds:g} s each")
    framing, simulator = ServerProcess("framing"), ServerProcess("simulator")
    try:
        results = asyncio.run(run_rounds(framing, simulator, args.connections, args.window,
                                         args.seconds, args.rounds))
    except KeyboardInterrupt:
        return 130
    finally:
        framing.stop()
        simulator.stop()
    for name, rs in results.items():
        rate, p50, p99 = (statistics.median(r[k] for r in rs) for k in ("rate", "p50", "p99"))
        print(f"median {name:8} {rate:9,.0f} /s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    ours = statistics.median(r["rate"] for r in results["pool"])
    ceiling = statistics.median(r["rate"] for r in results["ceiling"])
    pairs = [o["rate"] / c["rate"] for c, o in zip(results["ceiling"], results["pool"])]
    print(f"ratio pool/ceiling {ours / ceiling:.3f} (per round "
          f"{', '.join(f'{p:.3f}' for p in pairs)}; targets >= 20,000/s and >= 0.25)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
