"""``cmpp-gateway bench --processes N``: the load in N worker processes, one summary.

Each worker (``main``, in a Python process spawned by ``run_processes``) runs the load of
one process (``driver.Run``) with its share of the connections, the TPS and the count
(``options.shares``): the account's totals hold across processes. The first worker logs in
alone, the others once it is in (a wrong password costs one attempt, as in one process);
then all start together. The parent talks to each worker in JSON lines, commands on its
stdin, events on its stdout:

    parent -> worker   {"setup": {...}}, then {"do": "login" | "go" | "stop" | "enough"}
    worker -> parent   {"event": "ready" | "error" | "progress" | "result", ...}

Workers ignore SIGINT: Ctrl-C reaches the parent, which tells every worker to stop (a second
one ends them at once); a worker whose parent is gone stops as well (its stdin ends). A
worker that dies is reported, with its exit status, and the run goes on with the others; its
figures are missing from the summary. The tallies are merged (``Tally.merge``): counts add
up, latency percentiles come from the merged histograms, and reports that reached another
process than their SUBMIT's are paired at the end (``tally.match_across``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import dataclass, field

from . import report
from .driver import STOP_GRACE, Messages, Run
from .options import Share, UsageError, channel_config, destinations, parse_mix, shares
from .tally import Tally, match_across

WORKER = "import sys; from gateway.bench.workers import main; sys.exit(main())"
TICK = 0.25                 # seconds between a worker's progress events
SPAWN_TIMEOUT = 30.0        # seconds a worker may take to start and answer, beyond the logins


# ----------------------------------------------------------------------------- the parent

@dataclass
class Worker:
    """One worker process as the parent sees it."""

    share: Share
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"     # starting, ready, error, running, done, dead
    message: str = ""           # why it could not log in, or how it died
    snap: dict = field(default_factory=dict)
    expected: int = 0           # reports its SUBMITs asked for
    result: dict | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, message: dict) -> None:
        """A command on its stdin; a worker that is gone is not an error here."""
        stdin = self.process.stdin if self.process is not None else None
        if stdin is not None and not stdin.is_closing():
            try:
                stdin.write(json.dumps(message).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    async def listen(self) -> None:
        """Take its events until its stdout ends; then it is done or dead."""
        async for line in self.process.stdout:
            self._take(json.loads(line))
        status = await self.process.wait()
        if self.result is None and self.state != "error":
            self.state, self.message = "dead", _exit_status(status)
        elif self.state != "error":
            self.state = "done"
        self.changed.set()

    def _take(self, event: dict) -> None:
        kind = event["event"]
        if kind == "progress":
            self.snap, self.expected = event["snap"], event["expected"]
            return
        if kind == "ready":
            self.state, self.message = "ready", event.get("warning", "")
        elif kind == "error":
            self.state, self.message = "error", event["message"]
        elif kind == "result":
            self.result = event
        self.changed.set()

    async def wait_for(self, *states: str, timeout: float) -> None:
        """Until its state is one of ``states`` (or it is dead, or ``timeout`` passes)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.state not in (*states, "dead", "done", "error"):
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, end - loop.time()))
            except TimeoutError:
                self.kill()
                self.state, self.message = "dead", f"no answer in {timeout:g} s"
                return

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


def _exit_status(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


async def run_processes(args: argparse.Namespace, channel, target: str, stop: asyncio.Event,
                        err, prog: str) -> tuple[Tally | None, int]:
    """The run in ``args.processes`` workers: (the merged tally, 0 or 3 when a worker died),
    or (None, 2) when the first one cannot log in."""
    workers = [Worker(share) for share in shares(args.connections, args.tps, args.count,
                                                 args.processes)]
    listeners: list[asyncio.Task] = []
    try:
        for worker in workers:
            await _spawn(worker, args, channel)
            listeners.append(asyncio.create_task(worker.listen()))
        if not await _log_in(workers, channel, stop, err, prog):
            return None, 2
        return await _run(workers, args, stop, err, prog)
    finally:
        await _end(workers, listeners)


async def _spawn(worker: Worker, args: argparse.Namespace, channel) -> None:
    worker.process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, limit=1 << 30)
    settings = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool,
                                                                       type(None)))}
    worker.send({"setup": {"args": settings, "share": list(worker.share),
                           "processes": args.processes, "host": channel.host,
                           "port": channel.port, "account": channel.account,
                           "password": channel.password}})


async def _log_in(workers: list[Worker], channel, stop: asyncio.Event, err, prog: str) -> bool:
    """The first worker logs in alone, then the others; False when the first cannot (or a
    stop came first). A later one that cannot is reported and left out."""
    timeout = 2 * channel.connect_timeout + SPAWN_TIMEOUT
    first, others = workers[0], workers[1:]
    first.send({"do": "login"})
    await first.wait_for("ready", timeout=timeout)
    if first.state != "ready" or stop.is_set():
        print(f"{prog}: {first.message or 'interrupted before the first login'}", file=err)
        return False
    for worker in others:
        worker.send({"do": "login"})
    await asyncio.gather(*(w.wait_for("ready", timeout=timeout) for w in others))
    for worker in workers:
        if worker.message:
            print(f"{prog}: worker {worker.share.index + 1}: {worker.message}", file=err)
    if stop.is_set():
        print(f"{prog}: interrupted before the first login", file=err)
        return False
    return True


async def _run(workers: list[Worker], args, stop: asyncio.Event, err, prog: str):
    loop = asyncio.get_running_loop()
    running = [w for w in workers if w.state == "ready"]
    for worker in running:
        worker.state = "running"
        worker.send({"do": "go"})
    start, ticker = loop.time(), None
    if not args.quiet:
        ticker = asyncio.create_task(report.Progress(
            lambda now: _added(w.snap for w in workers), start, err).run())
    try:
        await _watch(running, args, stop)
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    return _merged(workers, err, prog)


async def _watch(running: list[Worker], args, stop: asyncio.Event) -> None:
    """Until every worker is done or dead: pass a stop on, and say "enough" once as many
    reports arrived, on any connection, as were asked for."""
    stopped = enough = False
    while any(w.state == "running" for w in running):
        if stop.is_set() and not stopped:
            stopped = True
            for worker in running:
                worker.send({"do": "stop"})
        if args.reports and not enough and _all_reported(running):
            enough = True
            for worker in running:
                worker.send({"do": "enough"})
        await asyncio.sleep(TICK / 2)


def _all_reported(workers: list[Worker]) -> bool:
    expected = sum(w.expected for w in workers)
    return expected > 0 and sum(w.snap.get("reports", 0) for w in workers) >= expected


def _added(snaps) -> dict:
    total: dict = {}
    for snap in snaps:
        for key, value in snap.items():
            total[key] = total.get(key, 0) + value
    return total or {"sent": 0, "acknowledged": 0, "last_second": 0, "in_flight": 0,
                     "throttled": 0, "errors": 0, "reports": 0}


def _merged(workers: list[Worker], err, prog: str) -> tuple[Tally | None, int]:
    """One tally of every worker that finished; status 3 when one died."""
    status, tallies, awaiting, early = 0, [], {}, {}
    for worker in workers:
        if worker.state == "dead":
            status = 3
            print(f"{prog}: worker {worker.share.index + 1} ({worker.share.connections} "
                  f"connections) {worker.message} before its summary: its figures are missing",
                  file=err)
        if worker.result is not None:
            tallies.append(Tally.from_json(worker.result["tally"]))
            awaiting.update(zip(*worker.result["awaiting"]))
            early.update(zip(*worker.result["early"]))
    if not tallies:
        return None, status or 1
    merged = tallies[0]
    for tally in tallies[1:]:
        merged.merge(tally)
    match_across(merged, awaiting, early)
    return merged, status


async def _end(workers: list[Worker], listeners: list[asyncio.Task]) -> None:
    """Every worker told to stop and given a moment, then killed if still there; every
    listener awaited, so that each process and its pipes are closed before the loop is (a
    killed worker's pipes end at once; a listener is cancelled only if they do not)."""
    for worker in workers:
        worker.send({"do": "stop"})
    if listeners:
        await asyncio.wait(listeners, timeout=STOP_GRACE + 5)
        for worker in workers:
            worker.kill()
        await asyncio.wait(listeners, timeout=5.0)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)


# ----------------------------------------------------------------------------- a worker

def main() -> int:
    """A worker's entry point (``WORKER``): Ctrl-C is the parent's to handle, and the pool's
    warnings stay quiet (the summary counts them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("cmpp_gateway").setLevel(logging.CRITICAL)
    return asyncio.run(_work())


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def _work() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    setup = json.loads(await reader.readline())["setup"]
    run = _make_run(setup)
    commands = {name: asyncio.Event() for name in ("login", "go", "stop", "enough")}
    listener = asyncio.create_task(_commands(reader, commands))
    try:
        return await _load(run, commands)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


def _make_run(setup: dict) -> Run:
    args, share = argparse.Namespace(**setup["args"]), Share(*setup["share"])
    channel = channel_config(
        setup["host"], setup["port"], setup["account"], setup["password"],
        access_number=args.access_number, connections=share.connections, window=args.window,
        tps=share.tps, provider=args.provider, service_id=args.service_id,
        connect_timeout=args.connect_timeout)
    messages = Messages(parse_mix(args.mix), destinations(args), channel, args.reports)
    return Run(args, channel, messages, count=share.count, stride=setup["processes"],
               offset=share.index)


async def _commands(reader: asyncio.StreamReader, commands: dict) -> None:
    """Set each command's event as it comes; the end of stdin (the parent is gone) is a stop."""
    async for line in reader:
        commands[json.loads(line)["do"]].set()
    commands["stop"].set()


async def _until(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    await asyncio.gather(*waits, return_exceptions=True)


async def _load(run: Run, commands: dict) -> int:
    stop, ticker = commands["stop"], None
    await _until(commands["login"], stop)
    if stop.is_set():
        return 0
    try:
        try:
            warning = await run.connect(stop, f"{run.channel.host}:{run.channel.port}")
        except UsageError as error:
            _emit({"event": "error", "message": str(error)})
            return 2
        _emit({"event": "ready", "warning": warning or ""})
        await _until(commands["go"], stop)
        if stop.is_set():
            return 0
        run.begin()
        ticker = asyncio.create_task(_progress(run))
        await run.submit_phase(stop)
        await run.report_phase(stop, commands["enough"])
    finally:
        await run.close(ticker)
    _emit_progress(run)                 # the last figures, for the parent's last progress line
    _emit({"event": "result", "tally": run.tally.to_json(),
           "awaiting": _pairs(run.recorder.awaiting), "early": _pairs(run.recorder.early)})
    return 0


def _pairs(times: dict[int, float]) -> list[list]:
    """{Msg_Id: time} as [[Msg_Id, ...], [time, ...]] (``zip(*...)`` reads it back)."""
    return [list(times), list(times.values())]


async def _progress(run: Run) -> None:
    while True:
        await asyncio.sleep(TICK)
        _emit_progress(run)


def _emit_progress(run: Run) -> None:
    _emit({"event": "progress", "snap": run.snapshot(), "expected": run.tally.reports_expected})
