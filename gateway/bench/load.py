"""``cmpp-gateway bench``: a load test for any CMPP 2.0 server (an SMS center's test system,
or the built-in simulator with ``--simulator``).

    cmpp-gateway bench --host 10.1.2.3 --port 7890 --account 900001 --password-env CMPP_PW \\
        --connections 4 --window 16 --tps 200 --duration 30 --reports --chart run.png
    cmpp-gateway bench --simulator --count 10000 --mix short=6,long=1,chinese=3 --reports

It drives a ``ChannelPool``, as the gateway does (the same connections, window and TPS pacing,
Result 8 backoff and resends), with connections x window submitters so that every window stays
full. Messages are short (ASCII), chinese (UCS2) or long (several UCS2 segments with a UDH),
picked by the weights of ``--mix``, to destinations cycled from ``--to`` or ``--to-range``.
With ``--reports`` every SUBMIT asks for a status report and every DELIVER is acknowledged.

A progress line goes to stderr every second; the summary goes to stdout (``--json``: as JSON).
A center whose AuthenticatorISMG is not the spec's is benched all the same (the gateway's
default, verify_authenticator = "warn"), and the summary ends with a warning saying so.
Ctrl-C stops submitting, waits a moment for the answers in flight and prints the summary.
Exit status: 0 when anything was acknowledged, 1 when nothing was, 2 on a usage error or when
the first connection cannot log in. The password is never printed (prefer ``--password-env``:
command lines are visible to other users of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from pathlib import Path

import cmpp
from gateway.channel import (
    ChannelPool,
    DeadlineExceeded,
    LoginRefused,
    OutcomeUnknown,
    PoolClosed,
    SubmitRejectedError,
    SubmitThrottledError,
)
from gateway.config import PASSWORD_CHECK, ConfigError, parse_config, toml_value
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.status import provider_tables

from . import report

PROG = "cmpp-gateway bench"
PASSWORD_VARIABLE = "CMPP_BENCH_PASSWORD"     # how the password reaches parse_config
STOP_GRACE = 1.0            # seconds the answers in flight get after Ctrl-C
DEFAULT_MIX = "short=6,long=1,chinese=3"
TEXTS = {
    "short": "Bench {n:08d}: your verification code is {code:06d}, valid for 5 minutes.",
    "chinese": "【性能测试】第{n:08d}条：您的验证码是{code:06d}，五分钟内有效，请勿泄露。",
    "long": "【性能测试】第{n:08d}条长短信：" + "这是一条用于压力测试的长短信，内容会被拆分成"
            "多个分段，每个分段都带有用户数据头。" * 3,
}


class UsageError(Exception):
    """The command line cannot start a run: exit status 2."""


def add_bench_command(subparsers) -> argparse.ArgumentParser:
    """Register ``bench`` on an argparse ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "bench", help="load-test a CMPP 2.0 server (or the built-in simulator)",
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=bench_main)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--simulator", action="store_true",
                        help="start the built-in simulator on 127.0.0.1 and test it (account "
                             "900001, password 'secret' unless given)")
    target.add_argument("--host", help="the SMS center's address")
    target.add_argument("--port", type=int, help="its CMPP port")
    target.add_argument("--account", help="the SP account (SP_Id, 6 digits)")
    secret = target.add_mutually_exclusive_group()
    secret.add_argument("--password", help="the shared secret (visible in ps)")
    secret.add_argument("--password-env", metavar="VAR",
                        help="the environment variable holding the shared secret")
    target.add_argument("--access-number", default="10690001", help="Src_Id (default 10690001)")
    target.add_argument("--service-id", default="", help="Service_Id (default empty)")
    target.add_argument("--provider", default="default",
                        help="receipt-code table for the report statuses (gateway/providers)")
    target.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    load = parser.add_argument_group("load")
    load.add_argument("--connections", type=int, default=4, help="default 4")
    load.add_argument("--window", type=int, default=16, help="per connection (default 16)")
    load.add_argument("--tps", type=float, default=0.0, help="SUBMITs/s, 0: no limit (default)")
    until = load.add_mutually_exclusive_group()
    until.add_argument("--duration", type=float, metavar="SECONDS",
                       help="stop submitting after this long (default 30)")
    until.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    load.add_argument("--mix", default=DEFAULT_MIX, help=f"weights (default {DEFAULT_MIX})")
    dest = load.add_mutually_exclusive_group()
    dest.add_argument("--to", default="13800138000", metavar="NUMBER[,NUMBER...]",
                      help="destinations, cycled (default 13800138000)")
    dest.add_argument("--to-range", metavar="FIRST:COUNT", help="COUNT numbers from FIRST")
    load.add_argument("--reports", action="store_true",
                      help="ask for status reports (Registered_Delivery 1) and collect them")
    load.add_argument("--report-wait", type=float, default=10.0, metavar="SECONDS",
                      help="how long to wait for outstanding reports at the end (default 10)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument("--chart", metavar="PNG", help="draw rate and latency per second (matplotlib)")
    out.add_argument("--quiet", action="store_true", help="no progress line on stderr")


# ----------------------------------------------------------------------------- the command line

def parse_mix(text: str) -> dict[str, int]:
    """"short=6,long=1,chinese=3" -> weights; UsageError names what is wrong."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if name not in TEXTS or not sep or not value.strip().isdigit():
            raise UsageError(f"--mix: {item!r} is not accepted; use KIND=WEIGHT with KIND one of "
                             f"{', '.join(TEXTS)} and WEIGHT a whole number, e.g. {DEFAULT_MIX}")
        weights[name] = int(value)
    if not any(weights.values()):
        raise UsageError(f"--mix: give at least one kind a weight above 0, e.g. {DEFAULT_MIX}")
    return weights


def schedule(weights: dict[str, int]) -> list[str]:
    """One cycle of kinds in the proportions of ``weights``, interleaved (smooth weighted round
    robin): {"a": 2, "b": 1} -> a, b, a."""
    total, current, order = sum(weights.values()), dict.fromkeys(weights, 0), []
    for _ in range(total):
        for kind, weight in weights.items():
            current[kind] += weight
        best = max(current, key=current.get)
        current[best] -= total
        order.append(best)
    return order


def destinations(args: argparse.Namespace) -> list[str]:
    if args.to_range:
        first, sep, count = args.to_range.partition(":")
        if not (first.isdigit() and sep and count.isdigit() and int(count) > 0
                and len(str(int(first) + int(count) - 1)) <= 21):
            raise UsageError(f"--to-range {args.to_range!r}: use FIRST:COUNT, e.g. "
                             "13800000000:1000")
        return [str(int(first) + k).zfill(len(first)) for k in range(int(count))]
    numbers = [n.strip() for n in args.to.split(",") if n.strip()]
    bad = [n for n in numbers if not re.fullmatch(r"\+?[0-9]{1,20}", n)]
    if bad or not numbers:
        raise UsageError(f"--to: {', '.join(bad) or 'nothing'}: give numbers of digits, "
                         "separated by commas")
    return numbers


def secret_from(args: argparse.Namespace) -> str | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UsageError(f"--password-env: {args.password_env} is not set in the environment")
        return value
    return args.password


def channel_config(host: str, port: int, account: str, password: str, *,
                   access_number: str = "10690001", connections: int = 4, window: int = 16,
                   tps: float = 0, provider: str = "default", service_id: str = "",
                   connect_timeout: float = 10.0):
    """A ChannelConfig checked as a configuration file's channel is; the password travels as
    an environment value so that it appears in no text. ConfigError names what is wrong."""
    text = (f"[channels.bench]\nprovider = {toml_value(provider)}\nhost = {toml_value(host)}\n"
            f"port = {port}\naccount = {toml_value(account)}\n"
            f'password_env = "{PASSWORD_VARIABLE}"\naccess_number = {toml_value(access_number)}\n'
            f"connections = {connections}\nwindow = {window}\ntps = {float(tps)!r}\n"
            f"service_id = {toml_value(service_id)}\n"
            f"connect_timeout = {float(connect_timeout)!r}\n")
    return parse_config(text, "<bench>", {PASSWORD_VARIABLE: password}).channels["bench"]


def check_arguments(args: argparse.Namespace) -> None:
    if args.simulator and (args.host or args.port):
        raise UsageError("--simulator starts its own SMS center; leave out --host and --port")
    missing = [flag for flag, value in (("--host", args.host), ("--port", args.port),
                                        ("--account", args.account)) if value is None]
    if not (args.password or args.password_env):
        missing.append("--password or --password-env")
    if missing and not args.simulator:
        raise UsageError(f"give {', '.join(missing)} (or use --simulator)")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be 1 or more")
    for flag, value in (("--duration", args.duration), ("--report-wait", args.report_wait)):
        if value is not None and not 0 < value < 1e7:
            raise UsageError(f"{flag} must be a number of seconds above 0")
    if args.chart:
        try:
            report.check_chart_support()
        except RuntimeError as error:
            raise UsageError(str(error)) from None
        if not Path(args.chart).resolve().parent.is_dir():
            raise UsageError(f"--chart: no directory {Path(args.chart).resolve().parent}")


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


# ----------------------------------------------------------------------------- the run

class Bench:
    """One run: the pool, its submitters, and the recorder of what comes back."""

    def __init__(self, args, channel, weights: dict[str, int], numbers: list[str], err) -> None:
        self.args, self.channel, self.numbers, self.err = args, channel, numbers, err
        self.kinds = schedule(weights)
        self.loop = asyncio.get_running_loop()
        self.tally = report.Tally()
        self.recorder = report.Recorder(self.tally, provider_tables().for_provider(
            args.provider), self.loop.time)
        self.pool = ChannelPool(channel, on_deliver=self.recorder.on_deliver,
                                on_event=self.recorder.on_event)
        self.next_message = 0
        self.stopping = False

    def in_flight(self) -> int:
        """SUBMITs sent and not answered yet, over every connection."""
        return sum(c.in_window for c in self.pool.status().connections)

    # Submitting.

    def _take(self, deadline: float | None) -> int | None:
        """The next message's number, or None when the run is over."""
        count = self.args.count
        if self.stopping or (count is not None and self.next_message >= count) \
                or (deadline is not None and self.loop.time() >= deadline):
            return None
        self.next_message += 1
        return self.next_message

    def build(self, number: int) -> list[cmpp.Submit]:
        kind = self.kinds[(number - 1) % len(self.kinds)]
        text = TEXTS[kind].format(n=number, code=number * 7919 % 1_000_000)
        dest = self.numbers[(number - 1) % len(self.numbers)]
        c = self.channel
        return [cmpp.Submit(pk_total=s.pk_total, pk_number=s.pk_number, tp_udhi=s.tp_udhi,
                            registered_delivery=1 if self.args.reports else 0,
                            service_id=c.service_id, msg_fmt=s.msg_fmt, msg_src=c.msg_src,
                            src_id=c.access_number, dest_terminal_ids=(dest,),
                            msg_content=s.msg_content)
                for s in cmpp.split_text(text, reference=number & 0xFF)]

    async def submitter(self, deadline: float | None) -> None:
        while (number := self._take(deadline)) is not None:
            await self.send_message(self.build(number), deadline)

    async def send_message(self, segments: list[cmpp.Submit], deadline: float | None) -> None:
        tally, acked = self.tally, 0
        for index, segment in enumerate(segments):
            tally.segments_started += 1
            try:        # the deadline holds back a new message, never the rest of one
                await self.pool.submit(segment, deadline if index == 0 else None)
            except DeadlineExceeded:    # nothing was sent: the run is over
                tally.segments_started -= 1
                self.stopping = True
                return
            except (SubmitRejectedError, SubmitThrottledError, OutcomeUnknown, PoolClosed,
                    ValueError) as error:
                tally.segments_failed += 1
                tally.second(self.loop.time()).failed += 1
                tally.failures[report.failure_name(error)] += 1
            else:
                acked += 1
                tally.segments_acknowledged += 1
                tally.second(self.loop.time()).acknowledged += 1
            if index == 0:
                tally.messages_started += 1
        if acked == len(segments):
            tally.messages_acknowledged += 1
        else:
            tally.messages_failed += 1

    async def submit_phase(self, stop: asyncio.Event) -> None:
        args, tally = self.args, self.tally
        deadline = None if args.count else tally.start + (args.duration or 30.0)
        tasks = [asyncio.create_task(self.submitter(deadline))
                 for _ in range(self.channel.connections * self.channel.window)]
        stopped, pending = asyncio.create_task(stop.wait()), set(tasks)
        try:
            while pending and not stop.is_set():
                done, _ = await asyncio.wait({*pending, stopped},
                                             return_when=asyncio.FIRST_COMPLETED)
                pending -= done
            if pending:                 # stopped: the answers in flight get a moment
                self.stopping = True
                await asyncio.wait(pending, timeout=STOP_GRACE)
        finally:
            for task in (*tasks, stopped):
                task.cancel()
            outcomes = await asyncio.gather(*tasks, stopped, return_exceptions=True)
            tally.end = self.loop.time()
        bugs = [o for o in outcomes if isinstance(o, Exception)]
        if bugs:
            raise bugs[0]

    async def report_phase(self, stop: asyncio.Event) -> None:
        if not self.args.reports or stop.is_set() or not self.recorder.awaiting:
            return
        waits = [asyncio.create_task(self.recorder.all_reported.wait()),
                 asyncio.create_task(stop.wait())]
        await asyncio.wait(waits, timeout=self.args.report_wait,
                           return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def wait_logged_in(bench: Bench, stop: asyncio.Event, target: str) -> None:
    """Until the first connection is in; UsageError when it cannot be, and a warning when the
    others do not follow within the connect timeout."""
    loop, pool, channel = bench.loop, bench.pool, bench.channel
    end = loop.time() + channel.connect_timeout + 1.0
    while pool.open_connections == 0:
        refusal, first = bench.recorder.login_refusal, pool.status().connections[0].last_error
        if refusal is not None:
            error = LoginRefused(refusal.status, refusal.reason, refusal.retryable)
            raise UsageError(f"{target}: {error}")
        if first or loop.time() > end:
            raise UsageError(first or f"no login at {target} within {channel.connect_timeout:g} s")
        if stop.is_set():
            raise UsageError("interrupted before the first login")
        await asyncio.sleep(0.01)
    try:
        await pool.wait_ready(timeout=channel.connect_timeout)
    except TimeoutError:
        status = pool.status()
        why = next((c.last_error for c in status.connections if c.last_error), "logging in")
        print(f"{PROG}: {status.open} of {status.wanted} connections open ({why}); going on "
              "with those", file=bench.err)


async def bench(args: argparse.Namespace, *, out=None, err=None, stop: asyncio.Event | None = None,
                signals: bool = False) -> int:
    """The command as a coroutine: 0 when anything was acknowledged, 1 when nothing was, 2 on a
    usage or login error. ``stop`` ends the run as Ctrl-C does (with ``signals``, SIGINT and
    SIGTERM set it; a second one cancels everything)."""
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
    run = Bench(args, channel, weights, numbers, err)
    if signals:
        _catch_signals(stop)
    return await _run(run, sim, stop, f"{host}:{port}", out)


async def _run(run: Bench, sim: Simulator | None, stop: asyncio.Event, target: str, out) -> int:
    args, pool, ticker = run.args, run.pool, None
    try:
        await pool.start()
        try:
            await wait_logged_in(run, stop, target)
        except UsageError as error:
            print(f"{PROG}: {error}", file=run.err)
            return 2
        run.tally.start = run.loop.time()
        if not args.quiet:
            ticker = asyncio.create_task(report.Progress(run.tally, run.err, run.in_flight).run())
        await run.submit_phase(stop)
        await run.report_phase(stop)
    finally:
        run.recorder.closing = True
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        await pool.close(timeout=STOP_GRACE)
        await _stopped(sim, 0)
    settings = {"target": target, "account": run.channel.account, "simulator": sim is not None,
                "interrupted": stop.is_set(), "reports_requested": args.reports,
                "provider": args.provider,
                "load": {"connections": args.connections, "window": args.window, "tps": args.tps,
                         "count": args.count,
                         "duration": None if args.count else args.duration or 30.0,
                         "mix": args.mix}}
    summary = report.summary(run.tally, run.loop.time(), settings)
    print(report.json_text(summary) if args.json else report.format_summary(summary), file=out)
    if args.chart:
        try:
            report.write_chart(run.tally, args.chart, f"{PROG} {target}: {args.connections} x "
                                                      f"window {args.window}")
        except OSError as error:
            print(f"{PROG}: cannot write the chart: {error}", file=run.err)
            return 2
        print(f"{PROG}: chart written to {args.chart}", file=run.err)
    return 0 if run.tally.segments_acknowledged else 1


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

