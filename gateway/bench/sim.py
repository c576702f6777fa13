"""Simulator benchmark: the ISMG simulator's CPU time per message, against another checkout's.

    python -m gateway.bench.sim [--seconds 5] [--rounds 3] [--connections 4] [--window 16]
                                [--rate N] [--baseline DIR]

Every benchmark and test runs the simulator (``gateway.sim``), and on a 2-CPU machine the CPU
it spends is taken from the gateway under test. This measures that cost alone, without a
gateway: the simulator of this checkout (and of ``--baseline DIR``'s, run by DIR/.venv's
Python from DIR, through names every version has: Simulator, SimulatorConfig, Account) runs
in a process of its own, configured as the benchmarks configure it (the bench account with 64
connections, nothing recorded, every report DELIVRD and due at once), and this process drives
it with a client that costs little: ``--connections`` logged-in connections that each keep
``--window`` SUBMITs (one destination, 70 UCS2 characters, a report requested) in flight,
send the next one on each SUBMIT_RESP and answer each DELIVER with its DELIVER_RESP, packed
with ``struct``; one write per read. With ``--rate N`` the SUBMITs are paced instead: N a
second in all, sent every 4 ms over the connections in turn (within their windows), as a
gateway's dispatcher sends them. A simulator saturated reads many PDUs at
each wake-up; paced at the rate a gateway sends (a few thousand a second), it reads a few,
and what each wake-up costs weighs on every message: that is the cost the gateway's
benchmarks see.

A message is a SUBMIT, its SUBMIT_RESP, its report's DELIVER and that DELIVER_RESP. Each
round opens the connections, runs a 0.5 s warm-up, then counts the reports received for
``--seconds`` and reads the simulator's CPU time (/proc) around that: CPU microseconds per
message = CPU seconds / reports. Printed per round and target: messages/s, the simulator's
and the client's CPU shares and the simulator's CPU per message; then medians, and with a
baseline, the ratio this/baseline of the medians (rounds alternate which target goes first).
The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import time
from pathlib import Path

import cmpp
from gateway.channel import china_time

from .checkout import CheckoutProcess
from .session import ACCOUNT, CONTENT, CONTENT_FMT, HOST, SECRET

WARMUP = 0.5
TICK = 0.004
_HEADER = struct.Struct(">III")
_DELIVER_RESP = struct.Struct(">IIIQB")
_ACTIVE_TEST_RESP = struct.Struct(">IIIB")
SUBMIT_RESP, DELIVER, ACTIVE_TEST, CONNECT_RESP = 0x80000004, 0x00000005, 0x00000008, 0x80000001

# The simulator's process, run by a checkout's own Python from its own directory: it prints
# its port and serves until its standard input reaches EOF.
SERVE = """
import asyncio, signal
from gateway.sim import Account, Simulator, SimulatorConfig

async def serve():
    sim = Simulator(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, max_connections=64)],
                                    record=False))
    _, port = await sim.start(HOST, 0)
    loop = asyncio.get_running_loop()
    told = loop.create_future()
    loop.add_reader(0, lambda: told.done() or told.set_result(None))
    print(port, flush=True)
    await told
    await sim.stop()

signal.signal(signal.SIGINT, signal.SIG_IGN)
asyncio.run(serve())
"""


class SimulatorProcess(CheckoutProcess):
    """The simulator of the checkout at ``root`` (None: this one) in a process of its own."""

    def __init__(self, name: str, root: Path | None) -> None:
        self.name = name
        head = f"HOST, ACCOUNT, SECRET = {HOST!r}, {ACCOUNT!r}, {SECRET!r}\n"
        super().__init__("simulator", head + SERVE, root=root)


class Client(asyncio.Protocol):
    """One connection: logs in, keeps ``window`` SUBMITs in flight, answers every DELIVER."""

    def __init__(self, window: int, counts: dict, paced: bool = False) -> None:
        self.window, self.counts, self.paced, self.in_flight = window, counts, paced, 0
        self.body = cmpp.encode(cmpp.Submit(
            registered_delivery=1, service_id="SVC", msg_fmt=CONTENT_FMT, msg_src=ACCOUNT,
            src_id="106900001", dest_terminal_ids=("13800138000",), msg_content=CONTENT))[12:]
        self.buffer, self.sequence, self.running = bytearray(), 1, True
        self.logged_in = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        stamp = cmpp.timestamp(china_time())
        source = cmpp.authenticator_source(ACCOUNT, SECRET, stamp)
        transport.write(cmpp.encode(cmpp.Connect(1, ACCOUNT, source, 0x20, stamp)))

    def _submit(self, out: list) -> None:
        self.sequence += 1
        self.in_flight += 1
        out.append(_HEADER.pack(12 + len(self.body), 4, self.sequence) + self.body)

    def send(self, count: int) -> int:
        """Paced: send up to ``count`` SUBMITs now, as the window allows; how many went."""
        out: list = []
        for _ in range(min(count, self.window - self.in_flight)):
            self._submit(out)
        if out:
            self.transport.write(b"".join(out))
        return len(out)

    def data_received(self, data: bytes) -> None:
        buffer, out, at = self.buffer, [], 0
        buffer += data
        while len(buffer) - at >= 12:
            length, command, sequence = _HEADER.unpack_from(buffer, at)
            if len(buffer) - at < length:
                break
            if command == SUBMIT_RESP:
                self.in_flight -= 1
                if self.running and not self.paced:
                    self._submit(out)
            elif command == DELIVER:
                self.counts["reports"] += 1
                msg_id = int.from_bytes(buffer[at + 12:at + 20], "big")
                out.append(_DELIVER_RESP.pack(21, 0x80000005, sequence, msg_id, 0))
            elif command == ACTIVE_TEST:
                out.append(_ACTIVE_TEST_RESP.pack(13, 0x80000008, sequence, 0))
            elif command == CONNECT_RESP and not self.logged_in.done():
                self.logged_in.set_result(None)
                for _ in range(0 if self.paced else self.window):
                    self._submit(out)
            at += length
        del buffer[:at]
        if out:
            self.transport.write(b"".join(out))


async def pace(clients: list[Client], rate: float) -> None:
    """SUBMITs at ``rate`` a second in all, over the clients in turn, every ``TICK`` seconds
    (as a gateway's dispatcher sends them, a few at a time), each client within its window."""
    loop, sent, turn = asyncio.get_running_loop(), 0, 0
    start = loop.time()
    while clients[0].running:
        await asyncio.sleep(TICK)
        owed = int((loop.time() - start) * rate) - sent
        for _ in range(len(clients)):
            if owed <= 0:
                break
            client = clients[turn % len(clients)]
            turn += 1
            went = client.send(-(-owed // len(clients)))
            sent, owed = sent + went, owed - went
        sent += max(owed, 0)          # what no window could take is not sent later in a burst


async def run_round(target: SimulatorProcess, connections: int, window: int,
                    seconds: float, rate: float | None = None) -> dict:
    loop, counts = asyncio.get_running_loop(), {"reports": 0}
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(
            lambda: Client(window, counts, paced=rate is not None), HOST, target.port)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.logged_in for c in clients)), 10)
    pacer = asyncio.ensure_future(pace(clients, rate)) if rate is not None else None
    await asyncio.sleep(WARMUP)
    reports, cpu, own = counts["reports"], target.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - start
    reports, cpu = counts["reports"] - reports, target.cpu_seconds() - cpu
    own = time.process_time() - own
    for client in clients:
        client.running = False
    if pacer is not None:
        await pacer
    await asyncio.sleep(0.2)                  # what is in flight is answered
    for client in clients:
        client.transport.close()
    await asyncio.sleep(0.1)
    return {"rate": reports / elapsed, "sim": cpu / elapsed, "client": own / elapsed,
            "us": cpu / reports * 1e6 if reports else float("nan")}


async def run_rounds(args, targets: list[SimulatorProcess]) -> dict[str, list[dict]]:
    results = {t.name: [] for t in targets}
    for number in range(1, args.rounds + 1):
        for target in (targets if number % 2 else targets[::-1]):
            r = await run_round(target, args.connections, args.window, args.seconds, args.rate)
            results[target.name].append(r)
            print(f"round {number} {target.name:8} {r['rate']:9,.0f} msg/s  simulator "
                  f"{r['sim']:4.0%}  client {r['client']:4.0%}  simulator {r['us']:5.1f} "
                  "us/message", flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=16, help="SUBMITs in flight each")
    parser.add_argument("--rate", type=float, help="SUBMITs a second in all, paced (default: "
                        "as fast as the simulator answers)")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="another checkout, with its own DIR/.venv")
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / ".venv" / "bin" / "python").exists():
        parser.error(f"--baseline: {args.baseline}/.venv/bin/python not found")
    print(f"load average before: {os.getloadavg()}", flush=True)
    targets = [SimulatorProcess("this", None)]
    try:
        if args.baseline is not None:
            targets.append(SimulatorProcess("baseline", args.baseline.resolve()))
        for target in targets:
            print(f"{target.name}: simulator pid {target.process.pid}", flush=True)
        results = asyncio.run(run_rounds(args, targets))
    except KeyboardInterrupt:
        return 130
    finally:
        for target in targets:
            target.stop()
    print(f"load average after: {os.getloadavg()}")
    medians = {name: {key: statistics.median(r[key] for r in rs) for key in ("rate", "us")}
               for name, rs in results.items()}
    for name, m in medians.items():
        print(f"median {name:8} {m['rate']:9,.0f} msg/s  simulator {m['us']:5.1f} us/message")
    if "baseline" in medians:
        this, base = medians["this"], medians["baseline"]
        print(f"ratio this/baseline: rate {this['rate'] / base['rate']:.3f}, simulator CPU per "
              f"message {this['us'] / base['us']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
