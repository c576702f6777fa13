"""The repeat memory micro-benchmark, on a few simulated seconds: its figures, and the same
run of another checkout's RecentKeys in a child process."""

import ast
import contextlib
import io
import subprocess
import sys
from pathlib import Path

from gateway.bench.repeat import main

SMALL = ["--limit", "20000", "--rate", "2000", "--window", "2", "--seconds", "4",
         "--batch", "100"]


def test_a_small_run_reports_the_cost_of_a_key_the_longest_call_and_the_bytes_a_key():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(SMALL) == 0
    text = out.getvalue()
    memory, speed = (ast.literal_eval(line.split(" ", 1)[1]) for line in text.splitlines()[1:])
    assert memory["keys"] == 20_000 and 0 < memory["bytes_a_key"] <= memory["peak_bytes_a_key"]
    assert speed["keys"] == 4_000                        # 2 s of 2,000 keys a second held
    assert 0 < speed["steady"]["check_us"] and 0 < speed["steady"]["add_us"]
    assert speed["longest_add_ms"] > 0 and speed["longest_check_ms"] > 0


def test_another_checkouts_recent_keys_run_in_a_child_process():
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-m", "gateway.bench.repeat", *SMALL,
                           "--phases", "memory", "--code", root,
                           "--impl", "gateway.api.rules:RecentKeys"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"RecentKeys from {root}/gateway/api/"), done.stdout
    assert "'keys': 20000" in done.stdout
