"""HTTP benchmark: the API's accepted rate on a running gateway, and the time to ``delivered``.

    python -m gateway.bench.http [--seconds 10] [--connections 64] [--batch-size 1000]
                                      [--rounds 3] [--phases singles,batches] [--profile DIR]
                                      [--baseline DIR] [--store sqlite|postgresql]

Three processes. The ISMG simulator runs in one (``session.ServerProcess``: it answers every
SUBMIT and sends a DELIVRD report at once); the gateway runs in a second (the daemon with its
API and the cyclic collector set as ``cmpp-gateway run`` sets it, one app, one notification
template, 4 CMPP connections, its SQLite store in a temporary directory with the default
durability: WAL, synchronous=NORMAL, group commit; it stops by itself, and removes that
directory, when this process goes away: its standard input then reads EOF); this process drives the HTTP load with aiohttp: ``--connections`` workers, each looping
one request at a time over a keep-alive connector limited to ``--connections``. The configuration turns the
repeat window and the per-app limit off, and every request names numbers and parameters of its
own anyway, so nothing is refused as a repeat or as too frequent.

Each of ``--rounds`` rounds runs the phases (``--phases``: both by default), one after the
other:

(a) singles: ``POST /v1/messages``, one recipient each;
(b) batches: ``POST /v1/messages/batch``, ``--batch-size`` recipients each.

A phase runs a 1 s warm-up, then measures for ``--seconds``: accepted requests/s (singles),
accepted recipients/s (batches), and p50/p99 latency per request of the requests completed in
that time. "Accepted" is HTTP 200 carrying a msg_id (a batch's success_count): the API answers
after the store's COMMIT, so each one is durable. Then the load stops and the phase waits until
every message it had accepted is final, reading the store's SQLite file read-only (its WAL
makes that safe while the gateway writes), and reports end to end: accepted messages / (time
of the last ``delivered`` status - time of the phase's first request). The gateway keeps
dispatching while it accepts, as it does in service: the accepted rates include that work.

Printed per phase: the rates, the latencies, the CPU share of the client, the gateway and the
simulator, and the gateway's CPU time per message, twice: during the load, per message
accepted then; and from the phase's start until every message is final, per message accepted
(the cost of a message end to end: accept, SUBMIT, report, status), and the simulator's over
that same span, per message accepted; the stages, from the store's times (segments'
``submitted_at``, reports' ``received_at``): SUBMITs and reports a second while the load ran,
after it while SUBMITs went on, and after the last SUBMIT, and both together over the drain
(``draining``: with nothing to accept, the outcomes a second the gateway can store, which
bounds the end-to-end rate); then medians over the rounds and the targets
(3,000 single requests/s, 20,000 batch recipients/s). ``--profile DIR`` records the gateway
with py-spy during every phase's load (DIR/this-<phase>-<round>.txt, collapsed stacks, 200
samples/s) and its drain (DIR/this-<phase>-<round>-drain.txt). ``--profile-mode``: ``active``
threads (default), ``idle`` ones too, ``gil`` only the thread holding the GIL, ``native`` that
thread with its C frames (the cyclic GC shows as gc_collect_main; py-spy then pauses the
process to sample). The rates are lower while profiling. The load average is printed before
and after: the figures mean little on a machine busy with other work.

``--baseline DIR`` compares with another checkout (say main's, in a worktree of its own with
its own virtualenv in DIR/.venv): each gateway gets its own simulator (this checkout's code
for both, unless ``--baseline-simulator``: then each checkout's own) and store; every round
runs each phase on both, one after the other, the first of them alternating from round to
round; the summary gives both medians and the ratios of this checkout's to the baseline's.
Rates from different runs on a shared machine are hard to compare; these ratios are not.

``--store postgresql``: each gateway's store is a database of its own on a PostgreSQL server
the bench starts on this machine (``gateway.bench.postgres``, fsync and synchronous_commit on,
as ``gateway.bench.pipeline`` runs it), read through the same queries; the server's CPU over
each phase, per message accepted, is printed beside the simulator's (the phases take turns, so
it is the phase's own).
Profiles are then named DIR/<this|baseline>-<phase>-<round>.txt.

The gateway's configuration, the program that runs it and the reader of its store are in
``gateway.bench.http_gateway``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from .http_gateway import CONFIG, GatewayProcess, PostgresReader, StoreReader, until_final
from .pipeline import Backends
from .session import ACCOUNT, HOST, SECRET, ServerProcess
from .sim import SimulatorProcess

WARMUP = 1.0
APP_KEY, MASTER_SECRET = "benchkey", "bench-master-secret"
TEMPLATE = 1
DRAIN_LIMIT = 300.0
TARGETS = {"singles": 3_000, "batches": 20_000}

# ----------------------------------------------------------------------------- the load

class Numbers:
    """Distinct, valid mainland numbers (1[3-9] and nine digits) and order numbers."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> tuple[str, int]:
        i = self.next
        self.next += 1
        return f"1{3 + (i // 10 ** 9) % 7}{i % 10 ** 9:09d}", i


def single_body(numbers: Numbers, size: int) -> bytes:
    mobile, i = numbers.take()
    return (f'{{"mobile":"{mobile}","temp_id":{TEMPLATE},'
            f'"temp_para":{{"order":"A{i}"}}}}').encode()


def batch_body(numbers: Numbers, size: int) -> bytes:
    entries = []
    for _ in range(size):
        mobile, i = numbers.take()
        entries.append(f'{{"mobile":"{mobile}","temp_para":{{"order":"B{i}"}}}}')
    return f'{{"temp_id":{TEMPLATE},"recipients":[{",".join(entries)}]}}'.encode()


def single_accepted(status: int, data: bytes) -> int:
    return 1 if status == 200 and b'"msg_id"' in data else 0


def batch_accepted(status: int, data: bytes) -> int:
    if status != 200:
        return 0
    answer = json.loads(data)
    return sum(1 for r in answer["recipients"] if "error_code" not in r and r.get("msg_id"))


PHASES = {
    "singles": ("/v1/messages", single_body, single_accepted),
    "batches": ("/v1/messages/batch", batch_body, batch_accepted),
}


def refusal(status: int, data: bytes) -> str:
    try:
        return f"{status}/{json.loads(data)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(status)


async def load(http: aiohttp.ClientSession, url: str, make_body, accepted_of, numbers: Numbers,
               size: int, connections: int, seconds: float, processes: dict) -> dict:
    """``connections`` workers POST for WARMUP + ``seconds``; counts what the window saw."""
    headers = {"Authorization": aiohttp.encode_basic_auth(APP_KEY, MASTER_SECRET),
               "Content-Type": "application/json"}
    state = {"measuring": False, "stop": False}
    latencies: list[float] = []
    counts = Counter()                  # window: accepted units; total: all accepted units
    refused = Counter()

    async def worker() -> None:
        while not state["stop"]:
            body = make_body(numbers, size)
            start = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    data = await response.read()
                    status = response.status
            except aiohttp.ClientError as error:
                refused[f"{type(error).__name__}: {error}"[:80]] += 1
                await asyncio.sleep(0.01)               # no busy loop against a dead server
                continue
            took = time.perf_counter() - start
            units = accepted_of(status, data)
            counts["total"] += units
            if not units:
                refused[refusal(status, data)] += 1
            if state["measuring"]:
                latencies.append(took)
                counts["window"] += units

    first_request = time.time()
    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(WARMUP)
    cpu = _cpu(processes)
    state["measuring"], begin = True, time.perf_counter()
    await asyncio.sleep(seconds)
    state["measuring"], elapsed = False, time.perf_counter() - begin
    cpu = {name: (end - cpu[name]) / elapsed if end is not None and cpu[name] is not None
           else None for name, end in _cpu(processes).items()}
    state["stop"] = True
    await asyncio.gather(*tasks)
    done = sorted(latencies)
    return {"first_request": first_request, "load_end": time.time(),
            "rate": counts["window"] / elapsed, "requests": len(done) / elapsed,
            "p50": done[len(done) // 2] * 1e3 if done else float("nan"),
            "p99": done[int(len(done) * 0.99)] * 1e3 if done else float("nan"),
            "accepted": counts["total"], "refused": dict(refused), "cpu": cpu,
            "gateway_us": (cpu["gateway"] or 0.0) / (counts["window"] / elapsed) * 1e6
            if counts["window"] else float("nan")}    # no request completed in the window


def _cpu(processes: dict) -> dict:
    return {"client": time.process_time(),
            **{name: p.cpu_seconds() for name, p in processes.items()}}


# ----------------------------------------------------------------------------- the rounds

class Target:
    """One gateway under test, with its simulator and a reader of its store: this checkout's
    ("this") or --baseline's ("baseline")."""

    def __init__(self, name: str, directory: Path, root: Path | None,
                 own_simulator: bool = False, backends: Backends | None = None) -> None:
        """``backends``: its store is a new database on their PostgreSQL server (None: an
        SQLite file in ``directory``)."""
        self.name, self.simulator, self.gateway, self.store = name, None, None, None
        setting = str(directory / f"{name}.sqlite") if backends is None \
            else backends.fresh("postgresql")
        self.database = None if backends is None else backends.postgres
        self.simulator = SimulatorProcess(name, root) if own_simulator \
            else ServerProcess("simulator")
        try:
            self.gateway = GatewayProcess(CONFIG.format(
                store=setting, host=HOST, port=self.simulator.port, account=ACCOUNT,
                secret=SECRET, app_key=APP_KEY, master_secret=MASTER_SECRET),
                directory / f"{name}.toml", root)
            self.store = StoreReader(setting) if backends is None else PostgresReader(setting)
        except BaseException:
            self.close()
            raise
        print(f"{name}: gateway pid {self.gateway.process.pid} on port {self.gateway.port}, "
              f"simulator pid {self.simulator.process.pid}", flush=True)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.gateway is not None:
            self.gateway.stop()
        if self.simulator is not None:
            self.simulator.stop()


async def run_rounds(args, targets: list[Target]) -> dict[str, dict[str, list[dict]]]:
    """Each round runs the phases on every target; with two, in turn, the first of them
    alternating from round to round, so that neither always runs on the busier machine."""
    numbers = Numbers()
    results = {t.name: {name: [] for name in args.phases.split(",")} for t in targets}
    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as http:
        for number in range(1, args.rounds + 1):
            order = targets if number % 2 else targets[::-1]
            for name in args.phases.split(","):
                for target in order:
                    result = await run_phase(args, http, target, name, f"{number}", numbers)
                    results[target.name][name].append(result)
                    label = f"{target.name} " if len(targets) > 1 else ""
                    print(f"round {number} {label}{name:7} " + _format(name, result), flush=True)
    return results


async def run_phase(args, http: aiohttp.ClientSession, target: Target, name: str, number: str,
                    numbers: Numbers) -> dict:
    """One phase on one target: the load, then the drain until every message is final."""
    path, make_body, accepted_of = PHASES[name]
    size = args.batch_size if name == "batches" else 1
    store, processes = target.store, {"gateway": target.gateway, "simulator": target.simulator}
    if target.database is not None:
        processes["database"] = target.database
    after_id, after_receipt = store.last_id(), store.last_receipt_id()
    label = f"{target.name}-{name}-{number}"
    cpu_before = {process: p.cpu_seconds() for process, p in processes.items()}
    spy = _start_profile(args, target.gateway, label)
    result = await load(http, f"http://{HOST}:{target.gateway.port}{path}", make_body,
                        accepted_of, numbers, size, args.connections, args.seconds, processes)
    _stop_profile(spy)
    spy = _start_profile(args, target.gateway, f"{label}-drain")
    final = await until_final(store, after_id, result["accepted"], DRAIN_LIMIT)
    _stop_profile(spy)
    cpu_after = {process: p.cpu_seconds() for process, p in processes.items()}
    result.update(final)
    result.update(stage_rates(store.stages(after_id, after_receipt, result["load_end"]),
                              result["first_request"], result["load_end"]))
    if final["last_delivered"] is not None and final["delivered"]:
        span = final["last_delivered"] - result["first_request"]
        result["end_to_end"] = final["delivered"] / span
        result["drain"] = final["last_delivered"] - result["load_end"]
    for process in processes:      # gateway_total_us, simulator_total_us, database_total_us
        before, after = cpu_before[process], cpu_after[process]
        if before is not None and after is not None and result["accepted"]:
            result[f"{process}_total_us"] = (after - before) / result["accepted"] * 1e6
    return result


def stage_rates(stages: dict, first_request: float, load_end: float) -> dict[str, float]:
    """SUBMITs and reports a second, from ``StoreReader.stages``: while the load ran
    (``loading_submits``, ``loading_reports``); after it, while SUBMITs went on
    (``submitting_submits``, ``submitting_reports``, for ``submitting_seconds``); after the
    last SUBMIT (``reports_after``, for ``after_seconds``); and both together over the whole
    drain (``draining``: how many outcomes a second the gateway stores with no load to
    accept, the rate that bounds the end-to-end one). A span that did not happen is left out."""
    rates: dict[str, float] = {}
    loading = load_end - first_request
    if loading > 0:
        rates["loading_submits"] = stages["submitted_loading"] / loading
        rates["loading_reports"] = stages["reports_loading"] / loading
    submits_end = max(stages["last_submit"] or load_end, load_end)
    end = max(stages["last_report"] or load_end, submits_end)
    drained_submits = stages["submitted"] - stages["submitted_loading"]
    if submits_end > load_end:
        span = rates["submitting_seconds"] = submits_end - load_end
        rates["submitting_submits"] = drained_submits / span
        rates["submitting_reports"] = (stages["reports_submitting"]
                                       - stages["reports_loading"]) / span
    if end > submits_end:
        span = rates["after_seconds"] = end - submits_end
        rates["reports_after"] = (stages["reports"] - stages["reports_submitting"]) / span
    if end > load_end:
        rates["draining"] = (drained_submits + stages["reports"]
                             - stages["reports_loading"]) / (end - load_end)
    return rates


def _start_profile(args, gateway: GatewayProcess, label: str):
    """py-spy recording the gateway into DIR/label.txt until _stop_profile (or 10 min)."""
    if not args.profile:
        return None
    spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                       os.environ.get("PATH", "")]))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    flags = {"active": ["--nonblocking"], "idle": ["--idle", "--nonblocking"],
             "gil": ["--gil", "--nonblocking"], "native": ["--gil", "--native"]}
    command = [spy, "record", "--pid", str(gateway.process.pid), "--format", "raw",
               "--duration", "600", "--rate", "200",
               "--output", str(Path(args.profile) / f"{label}.txt"), *flags[args.profile_mode]]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profile(spy) -> None:
    """Stop the recording: py-spy writes its file on SIGINT."""
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def _format(name: str, r: dict) -> str:
    unit = "requests/s" if name == "singles" else "recipients/s"
    cpu = r["cpu"]
    shares = " ".join(f"{k} {v:4.0%}" if v is not None else f"{k} ?" for k, v in cpu.items())
    text = (f"{r['rate']:9,.0f} {unit:12} ({r['requests']:7,.1f} req/s)  p50 {r['p50']:7.2f} ms"
            f"  p99 {r['p99']:7.2f} ms  cpu {shares}  gateway {r['gateway_us']:5.0f} us/msg")
    if "end_to_end" in r:
        text += (f"\n        end to end {r['end_to_end']:9,.0f} messages/s ({r['accepted']:,} "
                 f"accepted, {r['delivered']:,} delivered, the last {r['drain']:.1f} s after "
                 "the load)")
    if "gateway_total_us" in r:
        text += f"  gateway {r['gateway_total_us']:5.0f} us/msg from accept to final"
    if "simulator_total_us" in r:
        text += f", simulator {r['simulator_total_us']:4.1f}"
    if "database_total_us" in r:
        text += f", database server {r['database_total_us']:4.1f}"
    if "loading_submits" in r:
        text += (f"\n        stages     while loading {r['loading_submits']:,.0f} SUBMITs/s with "
                 f"{r['loading_reports']:,.0f} reports/s")
    if "submitting_submits" in r:
        text += (f"; then {r['submitting_submits']:,.0f} SUBMITs/s with "
                 f"{r['submitting_reports']:,.0f} reports/s for {r['submitting_seconds']:.1f} s")
    if "reports_after" in r:
        text += f"; then {r['reports_after']:,.0f} reports/s for {r['after_seconds']:.1f} s"
    if "draining" in r:
        text += f"; draining {r['draining']:,.0f} SUBMITs and reports/s"
    if not r["complete"]:
        text += f"\n        NOT ALL DELIVERED: {r['delivered']:,} of {r['accepted']:,}"
    if r["others"] or r["refused"]:
        text += f"\n        other statuses {r['others']}  refused {r['refused']}"
    return text


def _summary(results: dict[str, dict[str, list[dict]]]) -> None:
    for target, phases in results.items():
        label = f"{target} " if len(results) > 1 else ""
        for name, rounds in phases.items():
            unit = "requests/s" if name == "singles" else "recipients/s"
            target_rate = TARGETS[name]
            verdict = "met" if _median(rounds, "rate") >= target_rate else "MISSED"
            print(f"median {label}{name:7} {_median(rounds, 'rate'):9,.0f} {unit} (target "
                  f"{target_rate:,}: {verdict})  p50 {_median(rounds, 'p50'):.2f} ms  "
                  f"p99 {_median(rounds, 'p99'):.2f} ms  end to end "
                  f"{_median(rounds, 'end_to_end'):,.0f} messages/s  gateway "
                  f"{_median(rounds, 'gateway_us'):.0f} us/msg during the load, "
                  f"{_median(rounds, 'gateway_total_us'):.0f} us/msg from accept to final, "
                  f"simulator {_median(rounds, 'simulator_total_us'):.1f}, "
                  + (f"database server {_median(rounds, 'database_total_us'):.1f}, "
                     if any("database_total_us" in r for r in rounds) else "")
                  + "draining "
                  f"{_median(rounds, 'draining'):,.0f} SUBMITs and reports/s")
    if len(results) == 2:
        _ratios(results["this"], results["baseline"])


def _ratios(this: dict[str, list[dict]], baseline: dict[str, list[dict]]) -> None:
    """This checkout against the baseline: the ratio of the medians."""
    for name, rounds in this.items():
        figures = []
        for key, what in (("rate", "accepted"), ("end_to_end", "end to end"),
                          ("gateway_us", "CPU/msg during the load"),
                          ("gateway_total_us", "CPU/msg accept to final"),
                          ("simulator_total_us", "simulator CPU/msg"),
                          ("database_total_us", "database server CPU/msg"),
                          ("draining", "draining")):
            if not any(key in r for r in rounds):
                continue                                # no database server: SQLite
            ours, theirs = _median(rounds, key), _median(baseline[name], key)
            figures.append(f"{what} {ours / theirs:.2f}x" if theirs else f"{what} ?")
        print(f"ratio this/baseline {name:7} " + ", ".join(figures))


def _median(rounds: list[dict], key: str) -> float:
    values = [r[key] for r in rounds if key in r]
    return statistics.median(values) if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per phase")
    parser.add_argument("--connections", type=int, default=64, help="concurrent requests")
    parser.add_argument("--batch-size", type=int, default=1000, help="recipients per batch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the phases; medians")
    parser.add_argument("--phases", default="singles,batches",
                        choices=("singles,batches", "singles", "batches", "batches,singles"),
                        metavar="PHASES", help="singles,batches (default), singles, batches "
                        "or batches,singles")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="also run the gateway of the checkout in DIR (with its own "
                        "virtualenv in DIR/.venv), in turn with this one, and print the ratios")
    parser.add_argument("--baseline-simulator", action="store_true",
                        help="with --baseline, each gateway driven by its own checkout's "
                        "simulator (default: both by this checkout's)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="each gateway's store: an SQLite file (default), or a database of "
                        "its own on a PostgreSQL server the bench starts (fsync on)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the gateway into DIR")
    parser.add_argument("--profile-mode", choices=("active", "idle", "gil", "native"),
                        default="active", help="--profile: active threads (default), idle "
                        "ones too, only the thread holding the GIL, or that with C frames")
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / ".venv" / "bin" / "python").exists():
        parser.error(f"--baseline: {args.baseline}/.venv/bin/python not found (make the "
                     "checkout's virtualenv: python3 -m venv .venv && .venv/bin/pip install -e .)")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    print(f"{args.connections} connections, batches of {args.batch_size}, {args.rounds} round(s)"
          f" of {args.seconds:g} s per phase (after {WARMUP:g} s of warm-up); "
          f"{_load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-http-", ignore_cleanup_errors=True) as directory:
        targets: list[Target] = []
        backends = Backends(Path(directory)) if args.store == "postgresql" else None
        try:
            own = args.baseline_simulator
            targets.append(Target("this", Path(directory), None, own, backends))
            if args.baseline is not None:
                targets.append(Target("baseline", Path(directory), args.baseline.resolve(),
                                      own, backends))
            results = asyncio.run(run_rounds(args, targets))
        except KeyboardInterrupt:
            return 130
        finally:
            for target in targets:
                target.close()
            if backends is not None:
                backends.close()
    _summary(results)
    print(_load_average())
    return 0


def _load_average() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(),
                                                                    os.cpu_count())
    except OSError:
        return "load average unknown"


if __name__ == "__main__":
    raise SystemExit(main())
