"""API benchmark: the HTTP API's own CPU per message, in one process, without the store.

    python -m gateway.bench.api [--requests 20] [--singles 2000] [--rounds 5]
                                [--baseline DIR] [--loops asyncio,uvloop] [--instructions]
                                [--cases batch,single]

The API's application (its middlewares, handlers and rules, as ``cmpp-gateway run`` serves
them) on a loopback port, in front of a store that answers at once with made-up ids, and a
client in the same process that sends prepared requests one at a time over one keep-alive
connection and reads each answer: the process's CPU time over the messages is what the API
costs a message (the client's share is small and the same for every tree). Measured:
``POST /v1/messages/batch`` with 1,000 recipients each (``--requests`` a round), with
``repeat_window`` off and at 30 s (the default, one repeat key a recipient), and ``POST
/v1/messages`` (``--singles`` a round). ``--cases`` measures only some of them (``batch``,
``batch-repeats``, ``single``).

Each measurement runs in a fresh process. ``--baseline DIR`` measures another source tree too
(a worktree of main, say): its API, in a process started in that tree, interleaved with ours
in every round (which goes first alternating), so that both see the same machine.
``--loops``: the event loops to measure ours on (``uvloop`` needs the ``fast`` extra). Printed:
each round's figures, then medians, and the machine's load average at the start and the end.

``--instructions`` counts instead of timing, for a machine too busy for CPU times to mean
much: the instructions (valgrind's callgrind, user space only, hash seed fixed) a message
costs, as the difference of two runs of N and 3N requests (N: ``--requests`` batches,
``--singles`` singles), so that start-up and the warm-up do not count. It repeats within about
1%, so one round is enough.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

APP_KEY, MASTER_SECRET = "benchkey", "bench-master-secret"
CASES = {"batch": ("/v1/messages/batch", 1000, "0"), "batch-repeats": (
    "/v1/messages/batch", 1000, "30"), "single": ("/v1/messages", 1, "0")}
WARM_UP = {1: 100, 1000: 2}            # requests before the measured ones, by their size
VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
COLLECTED = re.compile(r"Collected : (\d+)")

CONFIG = """
[gateway]
store = "unused.sqlite"
[channels.bench]
provider = "default"
host = "127.0.0.1"
port = 7890
account = "900001"
password = "secret"
access_number = "106900001"
connections = 4
[api]
repeat_window = {repeat}
messages_per_app_per_second = 0
codes_per_number_per_minute = 0
codes_per_number_per_hour = 0
[apps.bench]
app_key = "{app_key}"
master_secret = "{master_secret}"
signature = "性能测试"
[templates.1]
type = "notification"
content = "您的订单{{{{order}}}}已发货，请注意查收"
"""


# ----------------------------------------------------------------------------- the probe

class InstantStore:
    """Answers an API request at once, with ids counted from 1; keeps nothing."""

    shared = False

    def __init__(self) -> None:
        self.next_id = 1

    async def accept_request(self, request, now: float):
        from gateway.store import AcceptedRequest
        sent, refused = len(request.messages), len(request.refused)
        ids = tuple(range(self.next_id, self.next_id + sent))
        refused_ids = tuple(range(self.next_id + sent, self.next_id + sent + refused))
        self.next_id += sent + refused
        return AcceptedRequest(ids, refused_ids, request.render(ids, refused_ids))

    async def templates(self) -> list:
        return []

    async def signatures(self) -> list:
        return []


class ProbeGateway:
    """What the API reads of the gateway: the store and the apps."""

    def __init__(self, config) -> None:
        from gateway.store import AppDirectory
        self.store = InstantStore()
        self.apps = AppDirectory(config.apps, config.channels, self.store)

    async def accept_request(self, request):
        return await self.store.accept_request(request, time.time())


def bodies(path: str, size: int, count: int, first: int) -> list[bytes]:
    """``count`` requests, each to numbers and order numbers of its own."""
    import base64
    auth = base64.b64encode(f"{APP_KEY}:{MASTER_SECRET}".encode()).decode()
    out = []
    for n in range(first, first + count):
        entries = [(f"1{3 + (i // 10 ** 9) % 7}{i % 10 ** 9:09d}", i)
                   for i in range(n * size, (n + 1) * size)]
        if size == 1:
            body = json.dumps({"mobile": entries[0][0], "temp_id": 1,
                               "temp_para": {"order": f"A{entries[0][1]}"}})
        else:
            body = json.dumps({"temp_id": 1, "recipients": [
                {"mobile": m, "temp_para": {"order": f"B{i}"}} for m, i in entries]})
        data = body.encode()
        out.append(f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                   .encode() + data)
    return out


async def answer(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body = await reader.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200") or b"error_code" in body:
        raise RuntimeError(f"the API refused: {head[:40]!r} {body[:200]!r}")


async def probe(case: str, count: int) -> float:
    """µs of CPU per message for ``count`` requests of ``case``, after a warm-up."""
    from aiohttp import web

    from gateway.api import Api, create_app
    from gateway.config import parse_config
    path, size, repeat = CASES[case]
    config = parse_config(CONFIG.format(repeat=repeat, app_key=APP_KEY,
                                        master_secret=MASTER_SECRET))
    runner = web.AppRunner(create_app(Api(ProbeGateway(config), config)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    reader, writer = await asyncio.open_connection(*runner.addresses[0][:2])
    try:
        for request in bodies(path, size, WARM_UP[size], 0):
            writer.write(request)
            await answer(reader)
        measured = bodies(path, size, count, WARM_UP[size])
        cpu = time.process_time()
        for request in measured:
            writer.write(request)
            await answer(reader)
        return (time.process_time() - cpu) / (count * size) * 1e6
    finally:
        writer.close()
        await runner.cleanup()


def probe_main(case: str, count: int, loop: str) -> None:
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(probe(case, count))))


# ----------------------------------------------------------------------------- the rounds

def measure(tree: Path, case: str, count: int, loop: str, counted: bool = False) -> float:
    """One probe in a fresh process started in ``tree`` (which it imports the API from): µs
    of CPU a message, or with ``counted`` the instructions of the whole process."""
    code = (f"import runpy, sys; sys.argv = ['probe', {case!r}, '{count}', {loop!r}]; "
            f"runpy.run_path({__file__!r}, run_name='__probe__')")
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run([*(VALGRIND if counted else []), sys.executable, "-c", code],
                          cwd=tree, capture_output=True, text=True, env=env, check=False)
    found = COLLECTED.search(done.stderr) if counted else True
    if done.returncode or found is None:
        raise RuntimeError(f"the probe failed in {tree} (is valgrind installed, for "
                           f"--instructions?): {done.stderr[-2000:]}")
    return int(found.group(1)) if counted else float(done.stdout.strip().splitlines()[-1])


def instructions(tree: Path, case: str, count: int, loop: str) -> float:
    """Instructions a message: the difference of runs of ``count`` and 3 ``count`` requests."""
    low, high = (measure(tree, case, n, loop, counted=True) for n in (count, 3 * count))
    return (high - low) / (2 * count * CASES[case][1])


def check_tree(tree: Path) -> None:
    """A process started in ``tree`` must import the gateway from there."""
    found = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"],
                           cwd=tree, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(tree)}).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"a process started in {tree} imports {found}: not that tree")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="batches a round")
    parser.add_argument("--singles", type=int, default=2000, help="single sends a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="another source tree too")
    parser.add_argument("--loops", default="asyncio", help="asyncio, uvloop or both")
    parser.add_argument("--cases", default=",".join(CASES), type=lambda v: v.split(","),
                        help="some of: " + ", ".join(CASES) + " (comma-separated)")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions a message (valgrind) instead of timing")
    args = parser.parse_args(argv)
    if not set(args.cases) <= set(CASES):
        parser.error(f"--cases: some of {', '.join(CASES)}")
    ours = Path(__file__).resolve().parents[2]
    runs = [(f"ours, {loop}", ours, loop) for loop in args.loops.split(",")]
    if args.baseline:
        check_tree(args.baseline)
        runs.insert(0, ("baseline, asyncio", args.baseline, "asyncio"))
    print(f"{_load()}; {args.rounds} rounds", flush=True)
    figures: dict[tuple[str, str], list[float]] = {}
    for number in range(args.rounds):
        order = runs if number % 2 == 0 else runs[::-1]
        for case in args.cases:
            count = args.singles if case == "single" else args.requests
            for name, tree, loop in order:
                figures.setdefault((case, name), []).append(
                    instructions(tree, case, count, loop) if args.instructions
                    else measure(tree, case, count, loop))
        print(f"round {number + 1}: " + "; ".join(
            f"{case} {name} {values[-1]:.1f}" for (case, name), values in figures.items()),
            flush=True)
    unit = "instructions" if args.instructions else "µs of CPU"
    for (case, name), values in figures.items():
        print(f"median {case:15} {name:18} {statistics.median(values):9.2f} {unit} a message"
              f" (rounds {', '.join(f'{v:.1f}' for v in values)})")
    print(_load())
    return 0


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


if __name__ == "__probe__":
    probe_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
elif __name__ == "__main__":
    raise SystemExit(main())
