"""`cmpp-gateway bench`: the command run in-process against a simulator on loopback."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

import cmpp
from gateway.bench.load import add_bench_command, bench, schedule
from gateway.bench.report import percentile
from gateway.sim import Account, Faults, Simulator, SimulatorConfig
from tests.aio import run

ACCOUNT, SECRET = "900001", "pw-Xy9!bench"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cmpp-gateway")
    add_bench_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def simulator(**settings) -> Simulator:
    settings.setdefault("accounts", [Account(ACCOUNT, SECRET, 8)])
    return Simulator(SimulatorConfig(seed=7, **settings))


async def run_bench(sim: Simulator, *argv: str, password: str = SECRET,
                    stop: asyncio.Event | None = None) -> tuple[int, str, str]:
    """The command against ``sim``: (exit status, stdout, stderr)."""
    host, port = sim.address
    args = parse("--host", host, "--port", str(port), "--account", ACCOUNT,
                 "--password", password, *argv)
    out, err = io.StringIO(), io.StringIO()
    status = await bench(args, out=out, err=err, stop=stop)
    return status, out.getvalue(), err.getvalue()


def results(summary: dict) -> dict[int, int]:
    return {r["result"]: r["count"] for r in summary["results"]}


def test_count_with_a_mix_agrees_with_what_the_simulator_received():
    async def scenario():
        async with simulator() as sim:
            status, out, err = await run_bench(
                sim, "--count", "100", "--mix", "short=6,long=1,chinese=3",
                "--to-range", "13800000000:10", "--connections", "2", "--window", "8")
            assert status == 0, err
            submits = [s.submit for s in sim.submits]
            # 60 short + 30 chinese + 10 long of 3 segments each
            assert len(submits) == 120
            assert "messages     100 started, 100 acknowledged, 0 failed" in out
            assert "segments     120 submitted, 120 acknowledged, 0 failed, 0 unanswered" in out
            assert "results      0 OK: 120" in out
            assert "reports" not in out.replace("no reports", "")
            short = [s for s in submits if s.msg_fmt == cmpp.MsgFmt.ASCII]
            chinese = [s for s in submits if s.msg_fmt == cmpp.MsgFmt.UCS2 and not s.tp_udhi]
            long = [s for s in submits if s.tp_udhi]
            assert (len(short), len(chinese), len(long)) == (60, 30, 30)
            assert all(s.pk_total == 3 and s.msg_fmt == cmpp.MsgFmt.UCS2 for s in long)
            references = {}
            for s in long:       # 05 00 03 ref total number
                assert s.msg_content[:3] == b"\x05\x00\x03" and s.msg_content[4] == 3
                assert s.msg_content[5] == s.pk_number
                references.setdefault(s.msg_content[3], set()).add(s.pk_number)
            assert len(references) == 10 and all(n == {1, 2, 3} for n in references.values())
            assert {s.dest_terminal_ids for s in submits} == \
                {(f"138000000{k:02d}",) for k in range(10)}
            assert all(s.registered_delivery == 0 and s.src_id == "10690001"
                       and s.msg_src == ACCOUNT for s in submits)
            assert sim.reports == []
            assert SECRET not in out + err
    run(scenario)


def test_the_tps_limit_holds_over_a_three_second_run():
    async def scenario():
        async with simulator() as sim:
            status, out, err = await run_bench(sim, "--tps", "100", "--duration", "3",
                                               "--mix", "short=1", "--json")
            assert status == 0, err
            summary = json.loads(out)
            # The limit is an upper bound; how close a loaded machine gets to it is not this
            # test's business (the lower bounds only say the run was not stalled).
            assert 45 <= summary["throughput"]["segments_per_second"] <= 110
            assert 2.9 <= summary["elapsed_seconds"] <= 6
            assert 135 <= len(sim.submits) <= 100 * summary["elapsed_seconds"] + 2
            assert summary["segments"]["acknowledged"] == len(sim.submits)
            progress = [line for line in err.splitlines() if "s] submitted" in line]
            assert len(progress) >= 3          # one line a second (stderr is not a terminal)
            assert "\r" not in err
            assert all("rate" in line and "in flight" in line and "result 8:" in line
                       and "errors" in line and "reports" in line for line in progress)
    run(scenario)


def test_result_8_from_the_simulator_shows_and_everything_still_gets_through():
    async def scenario():
        async with simulator(faults=Faults(throttle_tps=60)) as sim:
            status, out, err = await run_bench(sim, "--count", "120", "--mix", "short=1",
                                               "--connections", "2", "--json")
            assert status == 0, err
            summary = json.loads(out)
            by_result = results(summary)
            assert by_result[8] == sim.counters["throttled"] > 0
            assert by_result[0] == 120
            assert {"result": 8, "name": "FLOW_CONTROL", "count": by_result[8]} \
                in summary["results"]
            assert summary["segments"] == {"submitted": 120, "acknowledged": 120, "failed": 0,
                                           "unanswered": 0}
            assert summary["messages"]["acknowledged"] == 120
            assert len(sim.submits) == 120 + by_result[8]
            assert summary["submit_latency_ms"]["responses"] == len(sim.submits)
    run(scenario, timeout=30)


STATS = {"13900000001": "DELIVRD", "13900000002": "MK:0012", "13900000003": "MI:0029",
         "13900000004": "DB:0141", "13900000005": "ACCEPTD"}


def test_reports_with_a_stat_mix_map_to_common_statuses():
    async def scenario():
        async with simulator(report_delay=0.3,
                             stat_for=lambda s: STATS[s.dest_terminal_ids[0]]) as sim:
            status, out, err = await run_bench(
                sim, "--count", "50", "--mix", "short=1", "--to", ",".join(STATS),
                "--reports", "--report-wait", "5", "--json")
            assert status == 0, err
            summary = json.loads(out)
            reports = summary["reports"]
            assert reports["received"] == len(sim.reports) == 50
            assert reports["expected"] == 50 and reports["outstanding"] == 0
            assert reports["unmatched"] == 0
            assert reports["by_stat"] == {stat: 10 for stat in STATS.values()}
            assert reports["by_status"] == {"delivered": 10, "undeliverable": 10,
                                            "expired": 10, "rejected": 10, "pending": 10}
            assert reports["latency_ms"]["p50"] >= 300 and reports["latency_ms"]["p99"] < 3000
            assert all(s.submit.registered_delivery == 1 for s in sim.submits)
            assert sim.counters["delivers_acknowledged"] == 50
    run(scenario)


def test_reports_ahead_of_their_submit_resp_still_match():
    async def scenario():
        async with simulator(faults=Faults(report_before_resp=True)) as sim:
            status, out, err = await run_bench(sim, "--count", "30", "--reports", "--json")
            assert status == 0, err
            reports = json.loads(out)["reports"]
            segments = json.loads(out)["segments"]["acknowledged"]
            assert reports["received"] == reports["expected"] == segments == len(sim.reports)
            assert reports["unmatched"] == reports["outstanding"] == 0
    run(scenario)


def test_the_text_summary_names_results_statuses_and_latencies():
    async def scenario():
        async with simulator(stats={"DELIVRD": 1}) as sim:
            status, out, err = await run_bench(sim, "--count", "20", "--reports")
            assert status == 0, err
            lines = dict(line.split(None, 1) for line in out.splitlines()
                         if line and not line.startswith(" "))
            assert set(lines) >= {"target", "load", "elapsed", "messages", "segments",
                                  "throughput", "latency", "results", "failures", "reports",
                                  "connections"}
            assert "segments/s" in lines["throughput"] and "messages/s" in lines["throughput"]
            for q in ("p50", "p90", "p99", "max"):
                assert q in lines["latency"]
            assert "by status  delivered: " in out and "by Stat    DELIVRD: " in out
            assert lines["connections"] == "no errors"
    run(scenario)


def test_a_json_summary_parses_and_keeps_the_password_out():
    async def scenario():
        async with simulator() as sim:
            status, out, err = await run_bench(sim, "--count", "10", "--json", "--quiet")
            assert status == 0 and err == ""
            summary = json.loads(out)
            assert summary["target"] == f"127.0.0.1:{sim.address[1]}"
            assert summary["load"]["count"] == 10 and summary["simulator"] is False
            assert set(summary["submit_latency_ms"]) == {"responses", "p50", "p90", "p99", "max"}
            assert summary["connection_errors"] == {} and summary["interrupted"] is False
            assert SECRET not in out
    run(scenario)


def test_a_center_with_a_non_standard_authenticator_is_benched_with_a_warning():
    async def scenario():
        async with simulator(faults=Faults(zero_authenticator=True)) as sim:
            status, out, err = await run_bench(sim, "--count", "20", "--json", "--quiet",
                                               "--connections", "2")
            assert status == 0, err
            summary = json.loads(out)
            assert summary["messages"]["acknowledged"] == 20
            assert summary["authenticator_mismatches"] == 2
            [warning] = summary["warnings"]
            assert warning.startswith("the center's AuthenticatorISMG (all zero) does not match "
                                      "the standard computation")
            assert "on 2 of 2 logins" in warning and 'verify_authenticator = "warn"' in warning
            status, out, err = await run_bench(sim, "--count", "5", "--quiet")
            assert status == 0
            assert f"warning      {warning.replace('2 of 2', '4 of 4')}" in out.splitlines()
        async with simulator() as sim:                  # a standard center: no warning
            status, out, _ = await run_bench(sim, "--count", "5", "--json", "--quiet")
            summary = json.loads(out)
            assert summary["warnings"] == [] and summary["authenticator_mismatches"] == 0
    run(scenario)


def test_the_benchs_submits_pass_a_strict_center():
    async def scenario():
        async with simulator(strict=True, accounts=[Account(ACCOUNT, SECRET, 8, "10690001")]) \
                as sim:
            status, out, err = await run_bench(sim, "--count", "60", "--json", "--quiet",
                                               "--mix", "short=1,long=1,chinese=1",
                                               "--to-range", "13800000000:10")
            assert status == 0, err
            assert json.loads(out)["results"] == [{"result": 0, "name": "OK", "count": 100}]
            assert all(s.result == 0 for s in sim.submits)
    run(scenario)


def test_nothing_acknowledged_exits_1_with_the_results():
    async def scenario():
        async with simulator(faults=Faults(submit_result=13)) as sim:
            status, out, err = await run_bench(sim, "--count", "5", "--mix", "short=1", "--json")
            assert status == 1
            summary = json.loads(out)
            assert summary["results"] == [{"result": 13, "name": "DEST_TERMINAL_ID_ERROR",
                                           "count": 5}]
            assert summary["failures"] == {"Result 13 (DEST_TERMINAL_ID_ERROR)": 5}
            assert summary["messages"]["failed"] == 5
    run(scenario)


def test_a_refused_login_exits_2_with_the_status_and_reason():
    async def scenario():
        async with simulator() as sim:
            status, out, err = await run_bench(sim, "--count", "5", password="wrong-pw")
            assert status == 2 and out == ""
            assert "login refused" in err and "status 3 (authentication error)" in err
            assert "wrong-pw" not in err
            assert sim.logins == [(ACCOUNT, 3)]         # one attempt, then it stopped
            assert sim.submits == []
    run(scenario)


def test_a_retryable_refusal_and_an_unreachable_port_exit_2():
    async def scenario():
        async with simulator(faults=Faults(login_status=9)) as sim:
            status, _, err = await run_bench(sim, "--count", "5")
            assert status == 2 and "status 9 (other error)" in err
            port = sim.address[1]
        args = parse("--host", "127.0.0.1", "--port", str(port), "--account", ACCOUNT,
                     "--password", SECRET, "--count", "1")
        err = io.StringIO()
        assert await bench(args, out=io.StringIO(), err=err) == 2
        assert f"cannot connect to 127.0.0.1:{port}" in err.getvalue()
    run(scenario)


@pytest.mark.parametrize("argv,message", [
    ([], "give --host, --port, --account, --password or --password-env (or use --simulator)"),
    (["--simulator", "--port", "7890"], "leave out --host and --port"),
    (["--simulator", "--mix", "short=1,video=2"], "--mix: 'video=2' is not accepted"),
    (["--simulator", "--mix", "short=0"], "at least one kind a weight above 0"),
    (["--simulator", "--to", "1380013800a"], "--to: 1380013800a"),
    (["--simulator", "--to-range", "13800000000"], "use FIRST:COUNT"),
    (["--simulator", "--count", "0"], "--count must be 1 or more"),
    (["--simulator", "--duration", "-1"], "--duration must be a number of seconds"),
    (["--simulator", "--account", "9001"], '--account: "9001" is not accepted'),
    (["--simulator", "--window", "0"], "--window: 0 is out of range; use 1..256"),
    (["--simulator", "--password-env", "CMPP_BENCH_TEST_UNSET"],
     "--password-env: CMPP_BENCH_TEST_UNSET is not set"),
    (["--simulator", "--password", "\u5bc6\u7801"], "the password is not accepted"),
    (["--simulator", "--chart", "/nonexistent-dir/run.png"], "--chart"),
])
def test_usage_errors_exit_2_and_say_what_to_fix(argv, message):
    err = io.StringIO()
    assert asyncio.run(bench(parse(*argv), out=io.StringIO(), err=err)) == 2
    assert message in err.getvalue()
    assert "\u5bc6\u7801" not in err.getvalue()


def test_the_password_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CMPP_BENCH_TEST_PW", SECRET)

    async def scenario():
        async with simulator() as sim:
            host, port = sim.address
            args = parse("--host", host, "--port", str(port), "--account", ACCOUNT,
                         "--password-env", "CMPP_BENCH_TEST_PW", "--count", "3", "--quiet")
            out = io.StringIO()
            assert await bench(args, out=out, err=io.StringIO()) == 0
            assert len(sim.submits) >= 3 and SECRET not in out.getvalue()
    run(scenario)


def test_the_built_in_simulator_option():
    async def scenario():
        out, err = io.StringIO(), io.StringIO()
        status = await bench(parse("--simulator", "--count", "40", "--reports", "--json"),
                             out=out, err=err)
        assert status == 0, err.getvalue()
        summary = json.loads(out.getvalue())
        assert summary["simulator"] is True and summary["account"] == "900001"
        assert summary["reports"]["received"] == summary["segments"]["acknowledged"] >= 40
        assert summary["reports"]["by_status"] == {"delivered": summary["reports"]["received"]}
    run(scenario)


def test_a_stop_ends_the_run_with_a_summary_and_nothing_left_running():
    async def scenario():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.8, stop.set)
        async with simulator(record=False) as sim:
            started = time.monotonic()
            status, out, err = await run_bench(sim, "--duration", "30", "--reports", "--json",
                                               stop=stop)
            assert time.monotonic() - started < 5
            assert status == 0, err
            summary = json.loads(out)
            assert summary["interrupted"] is True and summary["segments"]["acknowledged"] > 0
            assert summary["elapsed_seconds"] < 3
        # run() asserts that no task is left behind
    run(scenario)


def test_ctrl_c_in_a_real_process_prints_the_summary_and_exits_0():
    proc = subprocess.Popen([sys.executable, "-m", "gateway.bench", "--simulator",
                             "--duration", "60", "--tps", "200", "--mix", "short=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()            # the first progress line, after 1 s
        assert "s] submitted" in first, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "(interrupted by Ctrl-C)" in out and "acknowledged" in out
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def test_chart_writes_a_png_of_rate_and_latency(tmp_path):
    path = tmp_path / "run.png"                  # matplotlib is in the test extra

    async def scenario():
        async with simulator() as sim:
            status, out, err = await run_bench(sim, "--duration", "2.2", "--tps", "150",
                                               "--reports", "--chart", str(path))
            assert status == 0, err
            assert f"chart written to {path}" in err
            width, height = _png_size(path)
            assert width >= 600 and height >= 400
    run(scenario)


def test_without_matplotlib_chart_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib fails
    err = io.StringIO()
    args = parse("--simulator", "--count", "5", "--chart", str(tmp_path / "x.png"))
    assert asyncio.run(bench(args, out=io.StringIO(), err=err)) == 2
    assert "--chart needs matplotlib" in err.getvalue()
    assert "pip install matplotlib" in err.getvalue()
    assert not (tmp_path / "x.png").exists()


def test_the_mix_schedule_keeps_the_proportions_interleaved():
    order = schedule({"short": 6, "long": 1, "chinese": 3})
    assert len(order) == 10
    assert (order.count("short"), order.count("long"), order.count("chinese")) == (6, 1, 3)
    assert schedule({"short": 2, "long": 1}) == ["short", "long", "short"]
    assert schedule({"short": 0, "chinese": 1}) == ["chinese"]


def test_percentiles_are_nearest_rank_below():
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0], 50) == 2.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) \
        == (51.0, 100.0, 100.0)


def test_add_bench_command_registers_bench():
    args = parse("--simulator")
    assert args.func.__name__ == "bench_main" and args.connections == 4 and args.window == 16
    assert os.environ.get("CMPP_BENCH_TEST_UNSET") is None
