"""``cmpp-gateway bench``: a load test for any CMPP 2.0 server (an SMS center's test system,
or the built-in simulator with ``--simulator``).

    cmpp-gateway bench --host 10.1.2.3 --port 7890 --account 900001 --password-env CMPP_PW \\
        --connections 4 --window 16 --tps 200 --duration 30 --reports --chart run.png
    cmpp-gateway bench --simulator --count 10000 --mix short=6,long=1,chinese=3 --reports
    cmpp-gateway bench --host 10.1.2.3 --port 7890 --account 900001 --password-env CMPP_PW \\
        --connections 16 --processes 4 --mix short@9=1,short=3,long=1 --duration 60

It logs in as the gateway does (the codec's session: CONNECT, the AuthenticatorISMG check),
then keeps every window full through a client of its own (``wire``) that costs less CPU per
SUBMIT than a server answering it: the gateway pool's window, TPS pacing and Result 8 backoff
and resends, with SUBMITs encoded once and answers read by their header. A connection the
center closes, or that breaks the protocol, is not opened again: the run goes on with the
others, and the summary's ``connections`` line says what ended it. Messages are short (ASCII), chinese
(UCS2) or long (several UCS2 segments with a UDH), picked by the weights of ``--mix``, each
kind with the Msg_level given after an @ (0 unless given), to destinations cycled from
``--to`` or ``--to-range``. With ``--reports`` every SUBMIT asks for a status report and every
DELIVER is acknowledged. ``--processes N`` runs the load in N worker processes, for a machine
with more cores than one: they share ``--connections`` and ``--tps`` (which stay totals for the
account) and their figures are merged into one summary.

A progress line goes to stderr every second; the summary goes to stdout (``--json``: as JSON):
counts, Result values, SUBMIT latency percentiles overall and per Msg_level, reports, and the
tool's own CPU per SUBMIT. A center whose AuthenticatorISMG is not the spec's is benched all
the same (the gateway's default, verify_authenticator = "warn"), and the summary ends with a
warning saying so. Ctrl-C stops submitting (in every process), waits a moment for the answers
in flight and prints the summary. Exit status: 0 when anything was acknowledged, 1 when nothing
was, 2 on a usage error or when the first connection cannot log in, 3 when a worker process
died (the summary then covers the others). The password is never printed (prefer
``--password-env``: command lines are visible to other users of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from gateway.config import PASSWORD_CHECK, ConfigError
from gateway.sim import Account, Simulator, SimulatorConfig

from . import report, workers
from .driver import Messages, Run
from .options import (
    UsageError,
    add_arguments,
    channel_config,
    check_arguments,
    destinations,
    parse_mix,
    schedule,
    secret_from,
)

PROG = "cmpp-gateway bench"

__all__ = ["add_bench_command", "bench", "bench_main", "channel_config", "main", "schedule"]


def add_bench_command(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on an argparse ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "bench", help="load-test a CMPP 2.0 server (or the built-in simulator)",
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=bench_main)
    return parser


def bench_main(args: argparse.Namespace) -> int:
    """Run the command from parsed arguments; Ctrl-C (or SIGTERM) ends it with a summary.
    Unless logging was set up, the pool's own warnings stay quiet: the summary counts them."""
    quiet = logging.getLogger("cmpp_gateway")
    level = quiet.level
    if not logging.getLogger().handlers:
        quiet.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(bench(args, signals=True))
    except (KeyboardInterrupt, asyncio.CancelledError):   # a second Ctrl-C
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        quiet.setLevel(level)


async def bench(args: argparse.Namespace, *, out=None, err=None, stop: asyncio.Event | None = None,
                signals: bool = False) -> int:
    """The command as a coroutine: 0 when anything was acknowledged, 1 when nothing was, 2 on a
    usage or login error, 3 when a worker process died. ``stop`` ends the run as Ctrl-C does
    (with ``signals``, SIGINT and SIGTERM set it; a second one cancels everything)."""
    out, err = out or sys.stdout, err or sys.stderr
    stop = stop or asyncio.Event()
    sim = None
    try:
        check_arguments(args)
        weights, numbers, password = parse_mix(args.mix), destinations(args), secret_from(args)
        if args.simulator:
            password = "secret" if password is None else password
        if PASSWORD_CHECK(password) is not None:
            raise UsageError(f"the password {PASSWORD_CHECK(password)}")
        if args.simulator:
            account = args.account or "900001"
            sim = Simulator(SimulatorConfig(
                accounts=[Account(account, password, max(4, args.connections))], record=False))
            host, port = await sim.start("127.0.0.1", 0)
        else:
            host, port, account = args.host, args.port, args.account
        channel = channel_config(
            host, port, account, password, access_number=args.access_number,
            connections=args.connections, window=args.window, tps=args.tps,
            provider=args.provider, service_id=args.service_id,
            connect_timeout=args.connect_timeout)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{PROG}: --{problem.key.replace('_', '-')}: {problem.message}", file=err)
        return await _stopped(sim, 2)
    except (UsageError, OSError) as error:
        print(f"{PROG}: {error}", file=err)
        return await _stopped(sim, 2)
    if signals:
        _catch_signals(stop)
    target = f"{host}:{port}"
    try:
        if args.processes > 1:
            tally, status = await workers.run_processes(args, channel, target, stop, err, PROG)
        else:
            run = Run(args, channel, Messages(weights, numbers, channel, args.reports),
                      count=args.count)
            tally, status = await _run(run, stop, target, err)
    finally:
        await _stopped(sim, 0)
    if tally is None:
        return status
    summarised = _summarise(args, tally, channel, target, sim is not None, stop, out, err)
    return status or summarised             # a worker that died (3) says more


async def _run(run: Run, stop: asyncio.Event, target: str, err):
    """The run in this process: (its tally, 0), or (None, 2) when no connection logs in."""
    ticker = None
    try:
        try:
            warning = await run.connect(stop, target)
        except UsageError as error:
            print(f"{PROG}: {error}", file=err)
            return None, 2
        if warning:
            print(f"{PROG}: {warning}", file=err)
        run.begin()
        if not run.args.quiet:
            ticker = asyncio.create_task(
                report.Progress(run.snapshot, run.tally.start, err).run())
        await run.submit_phase(stop)
        await run.report_phase(stop)
    finally:
        await run.close(ticker)
    return run.tally, 0


def _summarise(args, tally, channel, target: str, simulator: bool, stop: asyncio.Event,
               out, err) -> int:
    """Print the summary (and draw the chart); the exit status: 0 when anything was
    acknowledged, 1 when nothing was, 2 when the chart cannot be written."""
    settings = {"target": target, "account": channel.account, "simulator": simulator,
                "interrupted": stop.is_set(), "reports_requested": args.reports,
                "provider": args.provider,
                "load": {"connections": args.connections, "window": args.window, "tps": args.tps,
                         "count": args.count,
                         "duration": None if args.count else args.duration or 30.0,
                         "mix": args.mix, "processes": args.processes}}
    summary = report.summary(tally, tally.end or tally.start, settings)
    print(report.json_text(summary) if args.json else report.format_summary(summary), file=out)
    if args.chart:
        try:
            report.write_chart(tally, args.chart, f"{PROG} {target}: {args.connections} x "
                                                  f"window {args.window}")
        except OSError as error:
            print(f"{PROG}: cannot write the chart: {error}", file=err)
            return 2
        print(f"{PROG}: chart written to {args.chart}", file=err)
    return 0 if tally.segments_acknowledged else 1


async def _stopped(sim: Simulator | None, status: int) -> int:
    if sim is not None:
        await sim.stop()
    return status


def _catch_signals(stop: asyncio.Event) -> None:
    """First SIGINT/SIGTERM: stop the run gently; the next: cancel it (cleaning up all the
    same, without a summary)."""
    loop, main_task = asyncio.get_running_loop(), asyncio.current_task()

    def caught() -> None:
        if stop.is_set():
            main_task.cancel()
        stop.set()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, caught)
    except (NotImplementedError, RuntimeError):     # not the main thread, or no signals here
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.bench ...``, the same command before it is wired into the CLI."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return bench_main(parser.parse_args(argv))

