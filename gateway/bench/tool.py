"""Load-tool benchmark: ``cmpp-gateway bench`` against the simulator it drives, in CPU per
SUBMIT and in SUBMITs per second, by connections.

    python -m gateway.bench.tool [--seconds 5] [--rounds 3] [--connections 1,2,4,8]
                                 [--window 16] [--mix chinese=1] [--processes 2]
                                 [--baseline DIR] [--instructions]

The simulator runs in a process of its own (``session.ServerProcess``, ``record=False``). Each
run is the command itself, ``python -m gateway.bench``, in a process of its own, for
``--seconds`` + 1.5 s, with single-segment UCS2 messages (``--mix chinese=1``, 299-byte
SUBMITs; another ``--mix`` may be given) and no reports.
It is measured from outside, as a user would see it: at each of its progress lines (one a
second) the benchmark reads the SUBMITs acknowledged so far and the CPU time (user + system,
from /proc) of the tool's processes (with ``--processes``, the parent and its workers) and of
the simulator's. The figures are those between the line at 1 s and the last line before the
end (at ``--seconds`` + 1 s): neither the logins and the first second nor the drain count. Printed per
run: SUBMITs/s, the tool's and the simulator's CPU per SUBMIT (µs) and the share of a core
each used, and the ratio of the two CPU figures.

``--processes N`` adds a run of ours with ``--processes N`` at every connection count of at
least N. ``--baseline DIR`` runs the tool of another source tree too (a worktree of main, say;
same Python, same simulator), interleaved with ours in every round so that both see the same
machine, which goes first alternating from round to round. Medians of the rounds are printed
at the end, with the machine's load average at the start and at the end.

``--instructions`` counts instead of timing, for a machine too busy for CPU times to mean
much: the instructions (valgrind's callgrind, user space only) that the tool, the baseline's
tool and the simulator each execute per SUBMIT, at each connection count. Each figure is the
difference of two runs of 5,000 and 15,000 messages, the one measured under valgrind and the
other at full speed, so that start-up does not count; hash seeds are fixed, and a figure
repeats within about 1%. It leaves out the kernel's share (sending ours 299-byte SUBMITs
costs more than sending the simulator's 21-byte answers), which the CPU times include.

Targets (issue 15): the tool spends less CPU per SUBMIT than the simulator (ratio below 1),
and its rate grows with the connections until the simulator's process is the limit (its share
of a core near 1; on a 2-CPU machine shared with other work, it may never get there).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from .session import ACCOUNT, HOST, SECRET, ServerProcess, bench_simulator, cpu_seconds

PASSWORD_VARIABLE = "CMPP_BENCH_TOOL_PASSWORD"
PROGRESS = re.compile(r"\[\s*([\d.]+)s\] submitted [\d,]+\s+acked ([\d,]+)")
WARMUP = 1.0                # seconds of a run not measured at its start
TAIL = 0.5                  # ... and at its end (the last progress line is before that)
VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
COLLECTED = re.compile(r"Collected : (\d+)")
COUNTS = (5_000, 15_000)    # messages of the two runs whose difference --instructions takes
SERVE = "from gateway.bench.tool import serve_simulator; serve_simulator()"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a tool's worker processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def tool_command(port: int, connections: int, window: int, until: list[str], processes: int,
                 mix: str = "chinese=1") -> list[str]:
    """The tool's command line; ``until`` is ["--duration", S] or ["--count", N, "--quiet"]."""
    command = [sys.executable, "-m", "gateway.bench", "--host", HOST, "--port", str(port),
               "--account", ACCOUNT, "--password-env", PASSWORD_VARIABLE,
               "--connections", str(connections), "--window", str(window), "--mix", mix, *until]
    return command + (["--processes", str(processes)] if processes > 1 else [])


def tool_env(source: str | None) -> dict:
    """The environment of a tool run: the password, and ``source`` first on the path."""
    env = dict(os.environ, **{PASSWORD_VARIABLE: SECRET})
    if source:
        env["PYTHONPATH"] = source
    return env


def check_source(source: str) -> None:
    """Make sure that a run in ``source`` imports the tool from there (not from the tree this
    Python has installed); RuntimeError otherwise."""
    found = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"],
                           cwd=source, env=tool_env(source), capture_output=True, text=True,
                           check=False)
    if not found.stdout.startswith(os.path.realpath(source)):
        raise RuntimeError(f"a run in {source} imports {found.stdout.strip() or found.stderr}")


def one_run(simulator: ServerProcess, source: str | None, connections: int, window: int,
            seconds: float, processes: int = 1, mix: str = "chinese=1") -> dict:
    """One run of the tool (ours, or the one in ``source``), measured as the module says:
    from its first progress line at ``WARMUP`` s or later to its last one before the end
    (a line late on a loaded machine only makes the measured time shorter)."""
    until = ["--duration", f"{WARMUP + seconds + TAIL:g}"]
    proc = subprocess.Popen(tool_command(simulator.port, connections, window, until,
                                         processes, mix), cwd=source, env=tool_env(source),
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marks = []
    for line in proc.stderr:
        found = PROGRESS.search(line)
        if found and WARMUP - 0.05 <= float(found.group(1)) < WARMUP + seconds + TAIL / 2:
            tool = sum(cpu_seconds(pid) or 0.0 for pid in [proc.pid, *children(proc.pid)])
            marks.append((time.monotonic(), int(found.group(2).replace(",", "")), tool,
                          simulator.cpu_seconds() or 0.0))
    proc.wait()
    if proc.returncode != 0 or len(marks) < 2:
        raise RuntimeError(f"the tool{' in ' + source if source else ''} failed (exit status "
                           f"{proc.returncode}, {len(marks)} progress lines measured)")
    return _figures(marks[0], marks[-1])


def _figures(first: tuple, last: tuple) -> dict:
    (t0, n0, tool0, sim0), (t1, n1, tool1, sim1) = first, last
    elapsed, done = t1 - t0, max(1, n1 - n0)
    tool_us, sim_us = (tool1 - tool0) / done * 1e6, (sim1 - sim0) / done * 1e6
    return {"rate": done / elapsed, "tool_us": tool_us, "sim_us": sim_us,
            "ratio": tool_us / sim_us if sim_us else float("inf"),
            "tool_cores": (tool1 - tool0) / elapsed, "sim_cores": (sim1 - sim0) / elapsed}


def _format(r: dict) -> str:
    return (f"{r['rate']:9,.0f} /s  tool {r['tool_us']:5.1f} us/SUBMIT ({r['tool_cores']:4.0%})"
            f"  simulator {r['sim_us']:5.1f} us/SUBMIT ({r['sim_cores']:4.0%})"
            f"  tool/simulator {r['ratio']:.2f}")


def serve_simulator() -> None:
    """The benchmarks' simulator on a loopback port, printed on stdout, until stdin ends (for
    ``--instructions``, which may run it under valgrind)."""
    async def serve() -> None:
        sim = bench_simulator()
        _, port = await sim.start(HOST, 0)
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await sim.stop()
    asyncio.run(serve())


def instructions(source: str | None, connections: int, window: int, mix: str,
                 counted: str) -> float:
    """Instructions per SUBMIT of the tool (``counted`` "tool": ours, or the one in
    ``source``) or of the simulator ("simulator"), as the module says."""
    low, high = (_collected(source, connections, window, mix, counted, n) for n in COUNTS)
    return (high - low) / (COUNTS[1] - COUNTS[0])


def _collected(source: str | None, connections: int, window: int, mix: str, counted: str,
               count: int) -> int:
    """Instructions of one run of ``count`` messages, of the tool or of the simulator."""
    seeded = {"PYTHONHASHSEED": "0"}
    with tempfile.TemporaryFile("w+") as sim_err:       # a file: a pipe could fill up
        sim = subprocess.Popen([*(VALGRIND if counted == "simulator" else []), sys.executable,
                                "-c", SERVE], env=dict(os.environ, **seeded), text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sim_err)
        try:
            port = int(sim.stdout.readline())
            until = ["--count", str(count), "--quiet"]
            tool = subprocess.run([*(VALGRIND if counted == "tool" else []),
                                   *tool_command(port, connections, window, until, 1, mix)],
                                  cwd=source, env=dict(tool_env(source), **seeded),
                                  capture_output=True, text=True, check=False)
        finally:
            sim.communicate("")
        sim_err.seek(0)
        found = COLLECTED.search(tool.stderr if counted == "tool" else sim_err.read())
    if tool.returncode != 0 or found is None:
        raise RuntimeError(f"no instruction count for the {counted} (the tool's exit status "
                           f"{tool.returncode}; is valgrind installed?)")
    return int(found.group(1))


def count_instructions(args) -> None:
    """``--instructions``: one line per connection count."""
    for connections in args.connections:
        sim = instructions(None, connections, args.window, args.mix, "simulator")
        line = f"{connections} conn  simulator {sim:8,.0f}"
        for name, source in (("ours", None), ("baseline", args.baseline)):
            if name == "ours" or source:
                tool = instructions(source, connections, args.window, args.mix, "tool")
                line += f"  {name} {tool:8,.0f} ({tool / sim:.2f} of the simulator)"
        print(f"{line}  instructions per SUBMIT (load {os.getloadavg()[0]:.2f})", flush=True)


def runs(args, number: int) -> list[tuple[str, int, int, str | None]]:
    """(name, connections, processes, source) of every run of round ``number``, interleaved:
    by connection count, ours and the baseline (which goes first alternates), then ours with
    ``--processes``."""
    out = []
    for connections in args.connections:
        pair = [("ours", connections, 1, None)]
        if args.baseline:
            pair.append(("baseline", connections, 1, args.baseline))
        out += pair if number % 2 else pair[::-1]
        if args.processes > 1 and connections >= args.processes:
            out.append((f"ours -p{args.processes}", connections, args.processes, None))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--connections", default="1,2,4,8",
                        type=lambda text: [int(c) for c in text.split(",")])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--mix", default="chinese=1", help="the tool's --mix")
    parser.add_argument("--processes", type=int, default=2,
                        help="also run ours with --processes N (1: not)")
    parser.add_argument("--baseline", metavar="DIR", help="another source tree's tool too")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per SUBMIT (valgrind) instead of timing")
    args = parser.parse_args(argv)
    if args.baseline:
        check_source(args.baseline)
    if args.instructions:
        count_instructions(args)
        return 0
    print(f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; window {args.window}, "
          f"mix {args.mix}, {args.rounds} rounds of {args.seconds:g} s per run", flush=True)
    simulator, results = ServerProcess("simulator"), {}
    try:
        for number in range(1, args.rounds + 1):
            for name, connections, processes, source in runs(args, number):
                result = one_run(simulator, source, connections, args.window, args.seconds,
                                 processes, args.mix)
                results.setdefault((name, connections), []).append(result)
                print(f"round {number} {name:9} {connections} conn {_format(result)}  "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
    except KeyboardInterrupt:
        return 130
    finally:
        simulator.stop()
    print(f"medians (load {os.getloadavg()[0]:.2f}):")
    for (name, connections), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        medians = {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        print(f"median {name:9} {connections} conn {_format(medians)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
