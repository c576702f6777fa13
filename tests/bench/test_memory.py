"""The memory benchmark's verdicts, on a few seconds of each phase against a real gateway
process and the simulator."""

import contextlib
import io
import re

from gateway.bench.memory import main


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    return status, out.getvalue()


def test_the_speed_phase_samples_the_gateway_and_fails_a_peak_over_the_limit():
    status, text = _run(["--phases", "speed", "--minutes", "0.2", "--sample", "1.5",
                         "--connections", "4", "--batch-size", "200", "--limit", "1"])
    assert status == 1, text
    rows = re.findall(r"RSS\s+([\d.]+) MiB\s+peak\s+([\d.]+) MiB\s+accepted\s+(\d+)/s", text)
    assert len(rows) >= 3, text
    assert all(float(peak) >= float(rss) > 1 for rss, peak, _ in rows), text
    assert sum(int(rate) for _, _, rate in rows) > 0, text
    assert re.search(r"^FAIL speed: [\d,]+ accepted .* peak RSS [\d.]+ MiB \(limit 1\)$", text,
                     re.MULTILINE), text


def test_the_pending_phase_accepts_with_the_center_down_then_drains_after_a_restart():
    status, text = _run(["--phases", "pending", "--pending", "3000", "--drain", "4",
                         "--sample", "1", "--connections", "2", "--batch-size", "500",
                         "--limit", "1000"])
    assert status == 0, text
    found = re.search(r"^PASS pending: ([\d,]+) accepted .* about ([\d,]+) delivered", text,
                      re.MULTILINE)
    assert found, text
    assert int(found[1].replace(",", "")) >= 3000
    assert int(found[2].replace(",", "")) > 0
