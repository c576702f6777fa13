"""The soak benchmark's verdict: does a series trend upward (or, for a rate, downward) after
the warm-up, beyond what noise explains?

The slope of a series is the Theil-Sen estimate, the median of the slopes between every pair
of samples, which a few outliers (another process taking the CPU for a minute) cannot move;
its growth is that slope times the span of the samples, and a series fails when its growth
exceeds its tolerance (``Rule``).
"""

from __future__ import annotations

import itertools
import statistics
import sys
from dataclasses import dataclass


def theil_sen(points: list[tuple[float, float]]) -> float:
    """The median of the slopes between every pair of points (0 for fewer than two)."""
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in itertools.combinations(points, 2)
              if x2 != x1]
    return statistics.median(slopes) if slopes else 0.0


@dataclass(frozen=True)
class Rule:
    """How a series is judged: its allowed growth over the measured span is ``relative``
    times its median, at least ``floor``; ``falling`` judges a fall instead of a rise."""

    name: str
    unit: str
    relative: float
    floor: float
    falling: bool = False


def judge(rule: Rule, points: list[tuple[float, float]], offered: float) -> tuple[bool, str]:
    """(passed, a line that says why) for one series' post-warm-up points (minutes, value)."""
    span = points[-1][0] - points[0][0]
    slope = theil_sen(points)
    growth = slope * span
    median = statistics.median(y for _, y in points)
    if rule.falling:
        allowed = rule.relative * offered
        passed = -growth <= allowed
    else:
        allowed = max(rule.relative * median, rule.floor)
        passed = growth <= allowed
    return passed, (f"{rule.name:<14} median {median:10.2f} {rule.unit:<6} slope {slope:+9.3f}/min"
                    f"  {'change' if rule.falling else 'growth'} over {span:.0f} min "
                    f"{growth:+9.2f} (allowed {'-' if rule.falling else '+'}{allowed:.2f})"
                    f"  {'ok' if passed else 'FAIL'}")


def rules(rate: float) -> list[Rule]:
    return [Rule("rss", "MiB", 0.10, 8.0), Rule("store", "MiB", 0.10, 8.0),
            Rule("commit_ms", "ms", 0.50, 0.5), Rule("backlog", "msgs", 0.50, 5 * rate),
            Rule("e2e", "msg/s", 0.10, 0.0, falling=True)]


def verdict(samples: list[dict], warmup: float, rate: float, out=sys.stdout) -> int:
    """Print the judgement of every series; 0 (all pass), 1 (one fails), 2 (too short)."""
    after = [s for s in samples[1:] if s["minute"] >= warmup]
    if len(after) < 3:
        print(f"too short to judge: {len(after)} sample(s) after the {warmup:g} min warm-up",
              file=out)
        return 2
    failed = False
    print(f"trends over the {len(after)} samples after {warmup:g} min (Theil-Sen):", file=out)
    for rule in rules(rate):
        passed, text = judge(rule, [(s["minute"], s[rule.name]) for s in after], rate)
        failed |= not passed
        print("  " + text, file=out)
    print("FAIL: something grows" if failed else "PASS: nothing grows", file=out)
    return 1 if failed else 0
