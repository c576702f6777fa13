"""The command line of ``cmpp-gateway bench``: its arguments, their checks, and what they turn
into (the message mix, the destinations, the channel, each worker process's share).

Every problem is a ``UsageError`` whose message names the flag and the fix (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import NamedTuple

from gateway.config import parse_config, toml_value

from . import report

PASSWORD_VARIABLE = "CMPP_BENCH_PASSWORD"     # how the password reaches parse_config
DEFAULT_MIX = "short=6,long=1,chinese=3"
TEXTS = {
    "short": "Bench {n:08d}: your verification code is {code:06d}, valid for 5 minutes.",
    "chinese": "【性能测试】第{n:08d}条：您的验证码是{code:06d}，五分钟内有效，请勿泄露。",
    "long": "【性能测试】第{n:08d}条长短信：" + "这是一条用于压力测试的长短信，内容会被拆分成"
            "多个分段，每个分段都带有用户数据头。" * 3,
}
MAX_MSG_LEVEL = 9           # the spec gives no range; 0-9 is what centers take


class UsageError(Exception):
    """The command line cannot start a run: exit status 2."""


class Kind(NamedTuple):
    """One entry of ``--mix``: a kind of text, sent with this Msg_level."""

    text: str
    msg_level: int = 0

    def __str__(self) -> str:
        return self.text if not self.msg_level else f"{self.text}@{self.msg_level}"


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
    load.add_argument("--connections", type=int, default=4,
                      help="in all, across --processes (default 4)")
    load.add_argument("--window", type=int, default=16, help="per connection (default 16)")
    load.add_argument("--tps", type=float, default=0.0,
                      help="SUBMITs/s in all, 0: no limit (default)")
    load.add_argument("--processes", type=int, default=1, metavar="N",
                      help="worker processes sharing the connections and the TPS (default 1: "
                           "this process)")
    until = load.add_mutually_exclusive_group()
    until.add_argument("--duration", type=float, metavar="SECONDS",
                       help="stop submitting after this long (default 30)")
    until.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    load.add_argument("--mix", default=DEFAULT_MIX,
                      help=f"KIND[@MSG_LEVEL]=WEIGHT,... (default {DEFAULT_MIX})")
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


def parse_mix(text: str) -> dict[Kind, int]:
    """"short=6,long=1,chinese@9=3" -> weights by kind of text and Msg_level (0 unless given);
    UsageError names what is wrong."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        kind, at, level = name.partition("@")
        if kind not in TEXTS or not sep or not value.strip().isdigit() \
                or (at and not (level.isdigit() and int(level) <= MAX_MSG_LEVEL)):
            raise UsageError(f"--mix: {item!r} is not accepted; use KIND=WEIGHT or "
                             f"KIND@MSG_LEVEL=WEIGHT with KIND one of {', '.join(TEXTS)}, "
                             f"MSG_LEVEL 0-{MAX_MSG_LEVEL} and WEIGHT a whole number, e.g. "
                             f"{DEFAULT_MIX} or short@9=1,long@0=4")
        weights[Kind(kind, int(level) if at else 0)] = int(value)
    if not any(weights.values()):
        raise UsageError(f"--mix: give at least one kind a weight above 0, e.g. {DEFAULT_MIX}")
    return weights


def schedule(weights: dict) -> list:
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
    if args.count is not None and args.count < max(1, args.processes):
        raise UsageError("--count must be 1 or more (and at least --processes)")
    if not 1 <= args.processes <= max(1, args.connections):
        raise UsageError(f"--processes must be 1..--connections ({args.connections}): each "
                         "process holds at least one connection")
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


class Share(NamedTuple):
    """What one of ``--processes`` worker processes does: its connections, its part of the
    TPS (in proportion to its connections) and of ``--count`` (None: until the deadline)."""

    index: int
    connections: int
    tps: float
    count: int | None


def shares(connections: int, tps: float, count: int | None, processes: int) -> list[Share]:
    """Split the totals over ``processes`` workers: connections and count as evenly as whole
    numbers allow (the first ones take one more), TPS in proportion to the connections, so
    that every total stays exactly what was asked."""
    def even(total: int) -> list[int]:
        return [total // processes + (i < total % processes) for i in range(processes)]
    conns = even(connections)
    counts = even(count) if count is not None else [None] * processes
    return [Share(i, c, tps * c / connections if tps else 0.0, counts[i])
            for i, c in enumerate(conns)]
