"""Session benchmark: one Connection's SUBMIT rate against a framing-only ceiling.

    python -m gateway.bench.session [--seconds 5] [--rounds 3] [--window 16] [--profile F]

Ours: one ``gateway.connection.Connection``, logged in to the ISMG simulator
(``record=False``) running in a second process, driven by ``window`` coroutines that each loop
``await conn.submit(Submit(...))`` with a freshly built SUBMIT (one destination, 70 UCS2
characters, Registered_Delivery 0, so no reports). Everything between the call and the
SUBMIT_RESP's future counts: the Submit dataclass, the session (window, sequence, timers),
the codec both ways, the simulator's own work in its process, and loopback TCP.

Ceiling: the same loop with framing only. A server process answers every frame with one of
SUBMIT_RESP's size, echoing bytes 4-8 (the request id); frames are cut by a 4-byte big-endian
length prefix and nothing else is parsed. The client is an ``asyncio.Protocol`` with one Future
per request kept in a dict by id, frames of the encoded SUBMIT's size, the same coroutines, and
the same coalescing: the client writes once per loop iteration (``call_soon`` flush, as
``Connection.submit`` does) and the server once per ``data_received`` (as the simulator does).

Rounds interleave (ceiling, ours, ceiling, ours, ...) so both see the same machine noise.
Each round runs a 0.5 s warm-up, then counts SUBMIT_RESPs for ``--seconds``; latency is
``time.perf_counter`` around each await. Printed: per round the rate, p50/p99 latency, the CPU
share of the client and server processes and their CPU time per request; then the medians,
the ratio ours/ceiling of the rates (target: at least 0.25) and of CPU time per request.

With ``window`` coroutines and one coalesced write, the whole window travels as one batch:
client and server take turns rather than overlap (their CPU shares add up to about one core),
so the rate is about window / (client batch + server batch + two wake-ups), and the simulator's
cost per SUBMIT weighs as much as the client's. Load from other processes stretches the
wake-ups, which weigh most in the ceiling: compare the CPU ratio too. ``--profile F`` writes
a cProfile of the client during ours' rounds (its rates are then lower).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import signal
import statistics
import struct
import time

import cmpp
from cmpp.session import SessionConfig
from gateway.channel import Connection
from gateway.sim import Account, Simulator, SimulatorConfig

from .report import percentile

HOST = "127.0.0.1"
ACCOUNT, SECRET = "900001", "secret"
WARMUP = 0.5
CONTENT_FMT, CONTENT = cmpp.encode_text("短信网关性能测试" * 8 + "中文七十字符")  # 70 UCS2
SUBMIT_FIELDS = dict(registered_delivery=0, service_id="SVC", msg_fmt=CONTENT_FMT,
                     msg_src=ACCOUNT, src_id="106900001", dest_terminal_ids=("13800138000",),
                     msg_content=CONTENT)
SUBMIT_SIZE = len(cmpp.encode(cmpp.Submit(**SUBMIT_FIELDS)))                    # 299
RESP_SIZE = len(cmpp.encode(cmpp.SubmitResp(sequence_id=1, msg_id=1)))          # 21
PREFIX = struct.Struct(">II")                                # length, request id
REQUEST_BODY = bytes(SUBMIT_SIZE - PREFIX.size)
RESPONSE_HEAD, RESPONSE_TAIL = RESP_SIZE.to_bytes(4, "big"), bytes(RESP_SIZE - PREFIX.size)


# ----------------------------------------------------------------------------- framing only

def _frames(buffer: bytearray):
    """Yield (offset, size) of each whole length-prefixed frame; drop them from ``buffer``."""
    at, end = 0, len(buffer)
    while end - at >= 4:
        size = int.from_bytes(buffer[at:at + 4], "big")
        if end - at < size:
            break
        yield at, size
        at += size
    del buffer[:at]


class FramingServer(asyncio.Protocol):
    """Answers each frame with a RESP_SIZE frame carrying its id; one write per read."""

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out = [RESPONSE_HEAD + buffer[at + 4:at + 8] + RESPONSE_TAIL for at, _ in _frames(buffer)]
        if out:
            self.transport.write(b"".join(out))


class FramingClient(asyncio.Protocol):
    """Pipelined requests, one Future each, by id; writes coalesced once per loop iteration."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.pending: dict[int, asyncio.Future] = {}
        self.out: list[bytes] = []
        self.buffer = bytearray()
        self.sequence = 0
        self.flush_scheduled = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    async def request(self) -> bytes:
        self.sequence = seq = self.sequence % 0xFFFFFFFF + 1
        future = self.pending[seq] = self.loop.create_future()
        self.out.append(PREFIX.pack(SUBMIT_SIZE, seq) + REQUEST_BODY)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return await future

    def flush(self) -> None:
        self.flush_scheduled = False
        data = b"".join(self.out)
        self.out.clear()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        for at, size in _frames(buffer):
            frame = bytes(buffer[at:at + size])
            self.pending.pop(int.from_bytes(frame[4:8], "big")).set_result(frame)


# ----------------------------------------------------------------------------- server processes

def _serve(kind: str, pipe, report_delay: float = 0.0) -> None:
    """Entry point of a server process: send the port, then serve until the parent says stop
    or goes away (either makes the pipe readable). Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve_until_told(kind, pipe, report_delay))


def bench_simulator(report_delay: float = 0.0) -> Simulator:
    """The simulator the benchmarks drive: the bench account (64 connections), nothing
    recorded (a load test's SUBMITs would fill the memory), each report ``report_delay``
    seconds after its SUBMIT."""
    return Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, max_connections=64)],
                                     record=False, report_delay=report_delay))


async def _serve_until_told(kind: str, pipe, report_delay: float) -> None:
    loop = asyncio.get_running_loop()
    if kind == "simulator":
        sim = bench_simulator(report_delay)
        _, port = await sim.start(HOST, 0)
    else:
        server = await loop.create_server(FramingServer, HOST, 0)
        port = server.sockets[0].getsockname()[1]
    told = loop.create_future()
    loop.add_reader(pipe.fileno(), lambda: told.done() or told.set_result(None))
    pipe.send(port)
    await told
    if kind == "simulator":
        await sim.stop()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None (gone, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class ServerProcess:
    """A spawned server process (``kind`` "simulator" or "framing") and its port; the
    simulator sends each status report ``report_delay`` seconds after its SUBMIT."""

    def __init__(self, kind: str, report_delay: float = 0.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(kind, child_end, report_delay),
                                       daemon=True,
                                       name=f"bench-{kind}")
        self.process.start()
        child_end.close()
        if not self.pipe.poll(60):
            self.stop()
            raise RuntimeError(f"the {kind} server process did not start")
        self.port: int = self.pipe.recv()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process so far (Linux /proc), or None."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.pipe.close()                          # EOF: the child's loop ends
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


# ----------------------------------------------------------------------------- the load

async def drive(send, window: int, seconds: float, server: ServerProcess,
                profiler: cProfile.Profile | None = None) -> dict:
    """Run ``window`` coroutines looping ``await send()``; measure after a warm-up."""
    latencies: list[float] = []
    stop = False

    async def submitter() -> None:
        while not stop:
            start = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - start)

    tasks = [asyncio.create_task(submitter()) for _ in range(window)]
    await asyncio.sleep(WARMUP)
    latencies.clear()
    cpu, server_cpu, start = time.process_time(), server.cpu_seconds(), time.perf_counter()
    if profiler:
        profiler.enable()
    await asyncio.sleep(seconds)
    if profiler:
        profiler.disable()
    elapsed, done = time.perf_counter() - start, sorted(latencies)
    cpu, server_end = time.process_time() - cpu, server.cpu_seconds()
    stop = True
    await asyncio.gather(*tasks)
    server_cpu = server_end - server_cpu if server_end is not None else None
    return {"rate": len(done) / elapsed,
            "p50": percentile(done, 50) * 1e3, "p99": percentile(done, 99) * 1e3,
            "cpu": cpu / elapsed, "server_cpu": server_cpu and server_cpu / elapsed,
            "cpu_us": (cpu + (server_cpu or 0.0)) / len(done) * 1e6}


async def ceiling_round(server: ServerProcess, window: int, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(FramingClient, HOST, server.port)
    try:
        return await drive(client.request, window, seconds, server)
    finally:
        transport.close()


async def connection_round(server: ServerProcess, window: int, seconds: float,
                           profiler: cProfile.Profile | None = None) -> dict:
    conn = await Connection.open(HOST, server.port, ACCOUNT, SECRET,
                                 config=SessionConfig(window=window))
    try:
        return await drive(lambda: conn.submit(cmpp.Submit(**SUBMIT_FIELDS)), window, seconds,
                           server, profiler)
    finally:
        await conn.close()


async def run_rounds(framing: ServerProcess, simulator: ServerProcess, window: int,
                     seconds: float, rounds: int, profiler=None) -> dict[str, list[dict]]:
    kinds = {"ceiling": lambda: ceiling_round(framing, window, seconds),
             "ours": lambda: connection_round(simulator, window, seconds, profiler)}
    results: dict[str, list[dict]] = {name: [] for name in kinds}
    for number in range(1, rounds + 1):
        for name, run_round in kinds.items():
            results[name].append(result := await run_round())
            print(f"round {number} {name:8}" + _format(result), flush=True)
    return results


def _format(r: dict) -> str:
    server = f"{r['server_cpu']:4.0%}" if r["server_cpu"] is not None else "   ?"
    return (f" {r['rate']:9,.0f} /s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
            f"  cpu client {r['cpu']:4.0%} server {server} = {r['cpu_us']:5.1f} us/request")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--window", type=int, default=16, help="outstanding SUBMITs")
    parser.add_argument("--profile", metavar="FILE", help="cProfile ours' rounds into FILE")
    args = parser.parse_args(argv)
    print(f"one connection, window {args.window}, SUBMIT {SUBMIT_SIZE} B, "
          f"SUBMIT_RESP {RESP_SIZE} B, {args.rounds} x {args.seconds:g} s each")
    profiler = cProfile.Profile() if args.profile else None
    framing, simulator = ServerProcess("framing"), ServerProcess("simulator")
    try:
        results = asyncio.run(run_rounds(framing, simulator, args.window, args.seconds,
                                         args.rounds, profiler))
    except KeyboardInterrupt:
        return 130
    finally:
        framing.stop()
        simulator.stop()
    if profiler:
        profiler.dump_stats(args.profile)
    keys = ("rate", "p50", "p99", "cpu_us")
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in keys}
               for name, rs in results.items()}
    for name, m in medians.items():
        print(f"median {name:8} {m['rate']:9,.0f} /s  p50 {m['p50']:6.2f} ms  "
              f"p99 {m['p99']:6.2f} ms  cpu {m['cpu_us']:5.1f} us/request")
    pairs = [o["rate"] / c["rate"] for c, o in zip(results["ceiling"], results["ours"])]
    ratio = medians["ours"]["rate"] / medians["ceiling"]["rate"]
    print(f"ratio ours/ceiling {ratio:.3f} (per round {', '.join(f'{p:.3f}' for p in pairs)}; "
          f"target >= 0.25)")
    cpu_ratio = medians["ceiling"]["cpu_us"] / medians["ours"]["cpu_us"]
    print(f"cpu per request ceiling/ours {cpu_ratio:.3f} (client and server processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
