"""Repeat memory micro-benchmark: what the repeat rule's memory (``RecentKeys``) costs a key
and a call at full speed, and what it holds at a million keys.

    python -m gateway.bench.repeat [--rate 30000] [--seconds 75] [--window 30]
                                   [--limit 1000000] [--batch 1000] [--code DIR]
                                   [--phases memory,speed]

1. ``speed``: batches of ``--batch`` new random keys at ``--rate`` keys a second of a
   simulated clock for ``--seconds``, as the repeat rule takes a batch: each key checked
   (``seen``, ``full``), then those that passed added (above ``--limit`` / ``--window`` keys
   a second, the memory is full and refuses some). The time a key takes, checks and add apart,
   is the median over the batches after the first window (the steady state: as many keys
   leave the window as come) and over the first (filling). A second pass times every call
   alone (the timer's own cost in it): the longest, and the longest add, the event loop's
   longest stop.
2. ``memory`` (run first): ``--limit`` keys added inside one window: what they add to the
   process's resident memory (VmRSS, which counts memory maps, where tracemalloc does not),
   a key, at the end and at the peak (VmHWM: what a resize takes for a moment).

``--code DIR`` measures the ``RecentKeys`` of the checkout in DIR, say a baseline, in a child
process run with DIR first on its path (``--impl gateway.api.rules:RecentKeys`` for one from
before it was offered by ``gateway.api``). Compare runs made one
after the other on the same machine; the figures are medians, and CPU time, not rates.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import subprocess
import sys
import time


def batches(rate: float, seconds: float, size: int, seed: int = 15):
    """(now, keys) for each batch: ``size`` random 64-bit keys, ``rate`` keys a second."""
    draw, gap = random.Random(seed).getrandbits, size / rate
    for i in range(int(seconds * rate / size)):
        yield i * gap, [draw(64) for _ in range(size)]


def speed(cls, args) -> dict:
    """Median microseconds a key (checks, add) when filling and steady; the longest call."""
    recent, rows = cls(args.window, limit=args.limit), []
    clock = time.process_time
    for now, keys in batches(args.rate, args.seconds, args.batch):
        start = clock()
        passed = [key for key in keys if not (recent.seen(key, now) or recent.full(now))]
        checked = clock()
        for key in passed:
            recent.add(key, now)
        rows.append((now, checked - start, clock() - checked))
    return {"filling": per_key(rows, args, lambda now: now < args.window),
            "steady": per_key(rows, args, lambda now: now >= args.window),
            "keys": len(recent), **longest(cls, args)}


def per_key(rows, args, where) -> dict:
    chosen = [row for row in rows if where(row[0])]
    if not chosen:
        return {}
    check = statistics.median(row[1] for row in chosen) / args.batch * 1e6
    add = statistics.median(row[2] for row in chosen) / args.batch * 1e6
    return {"check_us": round(check, 3), "add_us": round(add, 3), "key_us": round(check + add, 3)}


def longest(cls, args) -> dict:
    """Every call timed alone: the longest check (seen, full) and the longest add, in ms."""
    recent, check, add = cls(args.window, limit=args.limit), 0, 0
    clock = time.thread_time_ns
    for now, keys in batches(args.rate, args.seconds, args.batch):
        passed = []
        for key in keys:
            start = clock()
            if not (recent.seen(key, now) or recent.full(now)):
                passed.append(key)
            check = max(check, clock() - start)
        for key in passed:
            start = clock()
            recent.add(key, now)
            add = max(add, clock() - start)
    return {"longest_check_ms": round(check / 1e6, 3), "longest_add_ms": round(add / 1e6, 3)}


def memory(cls, args) -> dict:
    """What ``--limit`` keys inside one window add to the process's resident memory, a key:
    at the end, and at the peak (VmHWM: run this phase first, in a fresh process)."""
    draw, gap = random.Random(16).getrandbits, 0.999 * args.window / args.limit
    before = resident("VmRSS")
    recent = cls(args.window, limit=args.limit)
    for i in range(args.limit):
        recent.add(draw(64), i * gap)
    held, peak = resident("VmRSS") - before, resident("VmHWM") - before
    return {"keys": len(recent), "bytes_a_key": round(held / args.limit, 1),
            "peak_bytes_a_key": round(peak / args.limit, 1), "held_mib": round(held / 2**20, 1)}


def resident(field: str) -> int:
    """VmRSS (now) or VmHWM (the most there was) of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def options(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway.bench.repeat",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30_000, help="keys a second (30000)")
    parser.add_argument("--seconds", type=float, default=75, help="simulated seconds (75)")
    parser.add_argument("--window", type=float, default=30, help="repeat_window (30)")
    parser.add_argument("--limit", type=int, default=1_000_000, help="repeat_keys (1000000)")
    parser.add_argument("--batch", type=int, default=1000, help="keys a batch (1000)")
    parser.add_argument("--phases", default="memory,speed", help="memory,speed")
    parser.add_argument("--code", help="measure the RecentKeys of the checkout in this directory")
    parser.add_argument("--impl", default="gateway.api:RecentKeys",
                        help="module:class to measure (gateway.api:RecentKeys; a checkout "
                             "before it was offered there: gateway.api.rules:RecentKeys)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = options(argv)
    if args.code:
        rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != args.code]
        rest.remove("--code")
        script = (f"import runpy, sys; sys.path.insert(0, {args.code!r}); sys.argv[1:] = "
                  f"{rest!r}; runpy.run_path({__file__!r}, run_name='__main__')")
        return subprocess.run([sys.executable, "-c", script], check=False).returncode
    module, name = args.impl.split(":")
    RecentKeys = getattr(importlib.import_module(module), name)     # noqa: N806 (a class)
    print(f"{name} from {sys.modules[RecentKeys.__module__].__file__}", flush=True)
    for phase in args.phases.split(","):
        print(phase, {"speed": speed, "memory": memory}[phase](RecentKeys, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
