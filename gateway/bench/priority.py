"""Priority benchmark: verification codes sent while a notification backlog drains.

    python -m gateway.bench.priority [--backlog 200000] [--rate 10] [--rounds 3]
                                     [--baseline main] [--senders 4] [--batch-size 1000]

Two gateways take turns, each ``cmpp-gateway run`` in a process of its own, from a source
tree of its own with the same Python: this tree, and the baseline, a temporary git worktree
at ``--baseline`` (main by default; ``--baseline ""``: none), removed at the end. Both drive
the same ISMG simulator in a third process, which answers every SUBMIT at once with a DELIVRD
report and notes when the first SUBMIT to each code's number arrives. Each gateway has a new
SQLite store (WAL, synchronous=NORMAL), 4 connections of window 16, its API with one app, a
notification template and a code template, and its limits off (repeat window, rates, codes
per number): nothing is refused.

A run: this process posts the backlog, ``--backlog`` notifications in batches of
``--batch-size`` recipients from ``--senders`` connections at a time, as fast as the gateway
takes them, and meanwhile sends verification codes (``POST /v1/codes``) at ``--rate`` a
second, each to a number of its own (199...), on a fixed schedule that does not wait for
answers. The codes stop once every notification is final (the store, read read-only, has
none accepted or submitted), then the run waits for the SUBMITs of the codes still
outstanding. A code's latency is from its 200 OK (this process's clock) to its SUBMIT's
arrival at the simulator (the simulator's clock: the same machine's); the API's own is from
its request to its 200 OK. A code whose SUBMIT never came within ``--limit`` seconds of the
run is counted as missing and as infinitely late.

Rounds alternate (baseline, this tree, baseline, ...), so that both see the same noise; the
summary gives the medians over the rounds of each one's p50 and p99, against the target: p99
under 1 s. Also printed: the backlog's end-to-end rate (notifications delivered a second
from the first batch to the last delivery), which priorities must not cost, and the load
average before and after: the figures mean little on a machine busy with other work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from gateway.sim import Account, Simulator, SimulatorConfig

from .http import APP_KEY, MASTER_SECRET, _load_average
from .http import CONFIG as HTTP_CONFIG
from .report import percentile
from .session import ACCOUNT, HOST, SECRET, ServerProcess
from .soak_gateway import GatewayProcess as SoakGateway
from .soak_gateway import free_port

CODE_PREFIX = "199"                  # the codes' numbers; the notifications' are 138...
TARGET_P99 = 1.0                     # seconds from a code's 200 OK to its SUBMIT

# The HTTP benchmark's gateway, listening where this one says, with a code template too.
CONFIG = HTTP_CONFIG.replace("[gateway]\n", '[gateway]\napi_listen = "{host}:{api_port}"\n'
                             'metrics_listen = "{host}:{ops_port}"\n', 1) + """
[templates.2]
type = "code"
content = "您的验证码是{{{{code}}}}，请勿告诉他人"
"""


# ----------------------------------------------------------------------------- the simulator

class CodeWatch(Simulator):
    """The simulator, noting when the first SUBMIT to each code's number arrives."""

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        self.arrivals: dict[str, float] = {}

    def on_submit(self, conn, event) -> None:
        number = event.submit.dest_terminal_ids[0]
        if number.startswith(CODE_PREFIX):
            self.arrivals.setdefault(number, time.time())
        super().on_submit(conn, event)


def _simulate(pipe) -> None:
    """Entry point of the simulator's process: send the port, then answer every message on
    the pipe with the arrivals noted since the last (and forget them), until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_simulate_until_told(pipe))


async def _simulate_until_told(pipe) -> None:
    sim = CodeWatch(SimulatorConfig(accounts=[Account(ACCOUNT, SECRET, max_connections=64)],
                                    record=False))
    _, port = await sim.start(HOST, 0)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def readable() -> None:
        try:
            pipe.recv()
        except EOFError:
            loop.remove_reader(pipe.fileno())
            done.set_result(None)
            return
        pipe.send(sim.arrivals)
        sim.arrivals = {}
    loop.add_reader(pipe.fileno(), readable)
    pipe.send(port)
    await done
    await sim.stop()


class SimulatorProcess:
    """The simulator in a spawned process: its port, and the codes' arrivals."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=_simulate, args=(child_end,), daemon=True,
                                       name="bench-simulator")
        self.process.start()
        child_end.close()
        if not self.pipe.poll(60):
            self.stop()
            raise RuntimeError("the simulator process did not start")
        self.port: int = self.pipe.recv()

    def arrivals(self) -> dict[str, float]:
        """Code number -> when its first SUBMIT arrived, since the last call."""
        self.pipe.send(None)
        return self.pipe.recv()

    stop = ServerProcess.stop


# ----------------------------------------------------------------------------- the gateway

class GatewayProcess:
    """``cmpp-gateway run`` of the source tree ``tree``, in ``directory`` (its configuration,
    store and log)."""

    ready = SoakGateway.ready          # until /readyz says ready (the channel logged in)
    stop = SoakGateway.stop            # SIGTERM (it drains), SIGKILL after 30 s

    def __init__(self, tree: Path, directory: Path, sim_port: int) -> None:
        self.store = directory / "gateway.sqlite"
        self.log = directory / "gateway.log"
        self.api, self.ops = free_port(), free_port()
        config = directory / "gateway.toml"
        config.write_text(CONFIG.format(
            store=self.store, host=HOST, api_port=self.api, ops_port=self.ops, port=sim_port,
            account=ACCOUNT, secret=SECRET, app_key=APP_KEY, master_secret=MASTER_SECRET),
            encoding="utf-8")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, **in_tree(tree))


def in_tree(tree: Path) -> dict:
    """How a Python process runs the code of ``tree`` rather than the installed one: from the
    tree (``-m`` and ``-c`` put the working directory first) and with it on PYTHONPATH."""
    return {"cwd": tree, "env": {**os.environ, "PYTHONPATH": str(tree)}}


def unfinished(store: Path) -> int:
    """Messages of the store not yet final (read-only; its WAL makes that safe)."""
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return sum(db.execute(f"SELECT COUNT(*) FROM messages WHERE status = '{s}'")
                   .fetchone()[0] for s in ("accepted", "submitted"))


# ----------------------------------------------------------------------------- the load

@dataclass
class Code:
    number: str
    sent: float                          # when its request went (time.time())
    ok: float | None = None              # when its 200 OK came
    refusal: str | None = None


@dataclass
class Run:
    label: str
    codes: list[Code] = field(default_factory=list)
    arrivals: dict[str, float] = field(default_factory=dict)
    accepted: int = 0
    rate: float = 0.0                    # the backlog, delivered a second end to end

    def latencies(self) -> list[float]:
        """200 OK to SUBMIT of every accepted code, sorted; a missing SUBMIT is infinite."""
        return sorted(self.arrivals.get(c.number, float("inf")) - c.ok
                      for c in self.codes if c.ok is not None)

    def api_latencies(self) -> list[float]:
        return sorted(c.ok - c.sent for c in self.codes if c.ok is not None)


def _headers() -> dict:
    return {"Authorization": aiohttp.encode_basic_auth(APP_KEY, MASTER_SECRET),
            "Content-Type": "application/json"}


async def post_backlog(http: aiohttp.ClientSession, base: str, count: int, size: int,
                       senders: int) -> int:
    """Post ``count`` notifications in batches of ``size``, ``senders`` at a time; returns
    how many were accepted."""
    batches = iter(range(0, count, size))
    accepted = 0

    async def sender() -> None:
        nonlocal accepted
        for first in batches:
            recipients = ",".join(f'{{"mobile":"138{i:08d}","temp_para":{{"order":"A{i}"}}}}'
                                  for i in range(first, min(count, first + size)))
            body = f'{{"temp_id":1,"recipients":[{recipients}]}}'
            async with http.post(f"{base}/v1/messages/batch", data=body,
                                 headers=_headers()) as response:
                answer = await response.json(content_type=None)
            accepted += answer.get("success_count", 0) if response.status == 200 else 0
    await asyncio.gather(*(sender() for _ in range(senders)))
    return accepted


async def send_codes(http: aiohttp.ClientSession, base: str, rate: float,
                     stop: asyncio.Event) -> list[Code]:
    """A code every 1/``rate`` seconds until ``stop``, on a schedule that waits for no
    answer; returns them once all are answered."""
    loop, codes, tasks = asyncio.get_running_loop(), [], []
    start = loop.time()

    async def one(code: Code) -> None:
        body = f'{{"mobile":"{code.number}","temp_id":2}}'
        try:
            async with http.post(f"{base}/v1/codes", data=body, headers=_headers()) as response:
                answer = await response.read()
                if response.status == 200:
                    code.ok = time.time()
                else:
                    code.refusal = f"{response.status} {answer[:80]!r}"
        except aiohttp.ClientError as error:
            code.refusal = f"{type(error).__name__}: {error}"

    while not stop.is_set():
        code = Code(f"{CODE_PREFIX}{len(codes):08d}", time.time())
        codes.append(code)
        tasks.append(asyncio.create_task(one(code)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), start + len(codes) / rate - loop.time())
    await asyncio.gather(*tasks)
    return codes


async def run_once(label: str, tree: Path, sim: SimulatorProcess, args) -> Run:
    """One gateway from ``tree``: the backlog and the codes, until both are through."""
    run = Run(label)
    with tempfile.TemporaryDirectory(prefix="bench-priority-") as directory:
        gateway = GatewayProcess(tree, Path(directory), sim.port)
        try:
            connector = aiohttp.TCPConnector(limit=args.senders + 200)
            async with aiohttp.ClientSession(connector=connector,
                                             timeout=aiohttp.ClientTimeout(total=120)) as http:
                await gateway.ready(http)
                await _load(run, http, f"http://{HOST}:{gateway.api}", gateway, sim, args)
        finally:
            gateway.stop()
    return run


async def _load(run: Run, http, base: str, gateway: GatewayProcess, sim: SimulatorProcess,
                args) -> None:
    sim.arrivals()                                       # forget the last run's
    stop = asyncio.Event()
    codes = asyncio.create_task(send_codes(http, base, args.rate, stop))
    began, deadline = time.time(), time.monotonic() + args.limit
    run.accepted = await post_backlog(http, base, args.backlog, args.batch_size, args.senders)
    while unfinished(gateway.store) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    run.rate = run.accepted / (time.time() - began)
    stop.set()
    run.codes = await codes
    expected = {c.number for c in run.codes if c.ok is not None}
    while time.monotonic() < deadline:
        run.arrivals.update(sim.arrivals())
        if expected <= run.arrivals.keys():
            break
        await asyncio.sleep(0.1)


# ----------------------------------------------------------------------------- reporting

def _seconds(value: float) -> str:
    return "missing" if value == float("inf") else f"{value * 1e3:8.1f} ms"


def describe(run: Run) -> str:
    late, api = run.latencies(), run.api_latencies()
    missing = sum(1 for v in late if v == float("inf"))
    refused = [c.refusal for c in run.codes if c.refusal]
    text = (f"{run.label:9} {len(late):4} codes  200 OK to SUBMIT p50 "
            f"{_seconds(percentile(late, 50))}  p99 {_seconds(percentile(late, 99))}"
            f"  max {_seconds(late[-1] if late else 0)}"
            f"  |  request to 200 OK p50 {_seconds(percentile(api, 50))}"
            f"  p99 {_seconds(percentile(api, 99))}  |  backlog {run.accepted:,} at "
            f"{run.rate:,.0f}/s end to end")
    if missing or refused:
        text += f"\n          {missing} SUBMIT(s) missing, {len(refused)} refused {refused[:3]}"
    return text


def summary(runs: list[Run]) -> list[str]:
    lines = []
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r for r in runs if r.label == label]

        def median(of, q):
            return statistics.median(percentile(of(r), q) for r in mine)
        p99 = median(Run.latencies, 99)
        verdict = "met" if p99 < TARGET_P99 else "MISSED"
        lines.append(
            f"median of {len(mine)} {label:9} 200 OK to SUBMIT p50 "
            f"{_seconds(median(Run.latencies, 50))}  p99 {_seconds(p99)} (target "
            f"{TARGET_P99 * 1e3:.0f} ms: {verdict})  request to 200 OK p50 "
            f"{_seconds(median(Run.api_latencies, 50))}  p99 "
            f"{_seconds(median(Run.api_latencies, 99))}  backlog "
            f"{statistics.median(r.rate for r in mine):,.0f}/s")
    return lines


# ----------------------------------------------------------------------------- the rounds

@contextlib.contextmanager
def baseline_tree(ref: str):
    """A temporary git worktree of this repository at ``ref``, removed afterwards; None
    without a ref."""
    if not ref:
        yield None
        return
    here = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="bench-priority-baseline-") as parent:
        tree = Path(parent) / "tree"
        subprocess.run(["git", "-C", str(here), "worktree", "add", "--detach", "--quiet",
                        str(tree), ref], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force",
                            str(tree)], check=False)


async def rounds(args, trees: list[tuple[str, Path]]) -> list[Run]:
    sim = SimulatorProcess()
    runs = []
    try:
        for number in range(1, args.rounds + 1):
            for label, tree in trees:
                run = await run_once(label, tree, sim, args)
                runs.append(run)
                print(f"round {number} {describe(run)}", flush=True)
    finally:
        sim.stop()
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=200_000, help="notifications a run")
    parser.add_argument("--batch-size", type=int, default=1000, help="recipients a batch")
    parser.add_argument("--senders", type=int, default=4, help="batches posted at a time")
    parser.add_argument("--rate", type=float, default=10.0, help="codes a second")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree; medians")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds a run at most")
    parser.add_argument("--baseline", default="main", help="git ref to compare with "
                        "(a temporary worktree); empty: none")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[2]
    print(f"backlog {args.backlog:,} notifications in batches of {args.batch_size} "
          f"({args.senders} at a time), codes at {args.rate:g}/s, {args.rounds} round(s); "
          f"{_load_average()}", flush=True)
    with baseline_tree(args.baseline) as baseline:
        trees = ([(args.baseline, baseline)] if baseline else []) + [("this", here)]
        for label, tree in trees:
            print(f"{label}: {_source(tree)} in {tree}", flush=True)
        try:
            runs = asyncio.run(rounds(args, trees))
        except KeyboardInterrupt:
            return 130
    for line in summary(runs):
        print(line)
    print(_load_average())
    return 0


def _source(tree: Path) -> str:
    """The tree's commit (marked when it has changes not committed), after checking that a
    process started ``in_tree`` imports the gateway's code from there."""
    found = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"],
                           capture_output=True, text=True, check=True,
                           **in_tree(tree)).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"a gateway started in {tree} would run {found}")

    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *command], capture_output=True,
                              text=True).stdout.strip()
    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" with changes not committed" if changed
                                                  else "")


if __name__ == "__main__":
    raise SystemExit(main())
