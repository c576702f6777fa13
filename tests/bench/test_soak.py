"""The soak benchmark: its verdict on synthetic series, and a few seconds of the real run."""

from __future__ import annotations

import io
import re

from gateway.bench.soak import arguments, soak
from gateway.bench.trend import Rule, judge, theil_sen, verdict
from tests.aio import run


def test_theil_sen_is_the_slope_of_a_line_and_ignores_a_few_outliers():
    line = [(t, 3.0 + 2.0 * t) for t in range(10)]
    assert theil_sen(line) == 2.0
    spiky = [(t, 100.0 + (500.0 if t in (3, 7) else 0.0)) for t in range(20)]
    assert theil_sen(spiky) == 0.0


def test_a_series_fails_when_it_grows_beyond_its_tolerance_and_only_then():
    rss = Rule("rss", "MiB", 0.10, 8.0)
    assert judge(rss, [(t, 100.0 + 0.1 * t) for t in range(10, 60)], 200)[0]     # +5 MiB
    passed, text = judge(rss, [(t, 100.0 + 0.5 * t) for t in range(10, 60)], 200)  # +25 MiB
    assert not passed and "FAIL" in text
    e2e = Rule("e2e", "msg/s", 0.10, 0.0, falling=True)
    assert judge(e2e, [(t, 200.0 + t) for t in range(10, 60)], 200)[0]           # rising: fine
    assert not judge(e2e, [(t, 200.0 - t) for t in range(10, 60)], 200)[0]       # -50 msg/s


def test_a_run_too_short_to_judge_exits_2():
    samples = [{"minute": m} for m in (0.0, 1.0, 2.0)]
    out = io.StringIO()
    assert verdict(samples, warmup=1.0, rate=200, out=out) == 2
    assert "too short to judge" in out.getvalue()


def test_a_few_seconds_of_soak_print_their_rows_and_a_verdict_that_matches_the_exit_status():
    out = io.StringIO()
    status: list[int] = []

    async def scenario():
        status.append(await soak(arguments(["--minutes", "0.15", "--sample", "2",
                                            "--warmup", "0", "--rate", "50"]), out=out))
    run(scenario, timeout=120)
    text = out.getvalue()
    rows = [line for line in text.splitlines() if re.match(r"\s+\d+\.\d\s", line)]
    assert len(rows) >= 4, text
    assert float(rows[-1].split()[5]) > 0                       # messages went end to end
    assert ("PASS: nothing grows" in text) == (status == [0]), text
    assert ("FAIL: something grows" in text) == (status == [1]), text
    assert "gateway stopped with status 0; 0 error line(s)" in text, text
