"""``cmpp-gateway simulate``: run the ISMG simulator from flags or a TOML file.

    cmpp-gateway simulate --listen 127.0.0.1:7890 --account 900001:secret:4 \\
        --report-delay 1 --stat DELIVRD=9 --stat UNDELIV=1 --fault throttle_tps=100
    cmpp-gateway simulate --strict --account 900001:secret:4:10690001 --heartbeat-interval 60

The TOML file takes the same settings::

    listen = "127.0.0.1:7890"
    gateway_code = 1
    report_delay = 1.0
    strict = true                 # refuse what a strict center refuses (docs/operators.md)
    timestamp_tolerance = 300     # strict: seconds a CONNECT Timestamp may be off China time
    heartbeat_interval = 180      # idle seconds before it sends ACTIVE_TEST
    heartbeat = true              # false: it never sends one
    [[accounts]]
    account = "900001"
    secret = "secret"
    max_connections = 4
    access_number = "10690001"    # strict: every Src_Id starts with it
    service_ids = ["MI0001"]      # strict: the Service_Ids it takes (none: any)
    [stats]
    DELIVRD = 9
    "MK:0012" = 1
    [faults]
    throttle_tps = 100

Flags given on the command line override the file. It runs until Ctrl-C, SIGTERM or
``--duration`` seconds, then prints what it saw; in strict mode it logs every refusal, with
the field and the code, to stderr. With ``--held FILE`` it keeps the status
reports and MO it could not deliver across its restart, as a real center does: they are saved
to FILE when it stops and sent, once the SPs log in, by the next run given the same FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import tomllib

from cmpp.session import SessionConfig
from gateway.ops import setup_logging
from gateway.sim import Account, Faults, HeldDelivers, Simulator, SimulatorConfig

_FAULTS = {f.name: f.type for f in dataclasses.fields(Faults)}


def add_simulate_command(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("simulate", help="run an ISMG simulator (CMPP 2.0 server)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a TOML file with the settings below")
    parser.add_argument("--listen", help="host:port (default 127.0.0.1:7890)")
    parser.add_argument("--account", action="append", default=[],
                        metavar="ID:SECRET[:MAX[:ACCESS_NUMBER]]",
                        help="an SP account, its secret, its connection limit and (for "
                             "--strict) its access number (repeatable)")
    parser.add_argument("--gateway-code", type=int, help="ISMG code inside Msg_Id")
    parser.add_argument("--report-delay", type=float, help="seconds from SUBMIT to its report")
    parser.add_argument("--stat", action="append", default=[], metavar="STAT=WEIGHT",
                        help="a Stat value of the reports and its weight (repeatable)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME=VALUE",
                        help=f"inject a fault (repeatable): {', '.join(_FAULTS)}")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--held", metavar="FILE", help="keep undelivered reports and MO in "
                        "FILE across a restart (loaded at start, saved at stop)")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="refuse what a strict SMS center refuses, with the spec's codes")
    parser.add_argument("--timestamp-tolerance", type=float, metavar="SECONDS",
                        help="--strict: how far a CONNECT Timestamp may be from China time "
                             "(default 300)")
    beat = parser.add_mutually_exclusive_group()
    beat.add_argument("--heartbeat-interval", type=float, metavar="SECONDS",
                      help="idle seconds before it sends ACTIVE_TEST (default 180)")
    beat.add_argument("--no-heartbeat", action="store_true",
                      help="never send ACTIVE_TEST (it still answers them)")
    parser.set_defaults(func=lambda args: simulate_main(args))
    return parser


def build_config(args: argparse.Namespace) -> tuple[SimulatorConfig, str, int]:
    """The simulator's settings from the file and the flags; ValueError names a bad one."""
    settings = {}
    if args.config:
        with open(args.config, "rb") as file:
            settings = tomllib.load(file)
    accounts = [Account(a["account"], a["secret"], a.get("max_connections", 4),
                        a.get("access_number", ""), tuple(a.get("service_ids", ())))
                for a in settings.get("accounts", [])]
    accounts += [_account(text) for text in args.account]
    stats = dict(settings.get("stats", {}))
    stats.update(_pair(text, float) for text in args.stat)
    faults = Faults(**{k: _fault_value(k, v) for k, v in settings.get("faults", {}).items()})
    for text in args.fault:
        name, value = _pair(text, str)
        setattr(faults, name, _fault_value(name, value))
    host, _, port = (args.listen or settings.get("listen", "127.0.0.1:7890")).rpartition(":")
    config = SimulatorConfig(
        accounts=accounts or [Account("900001", "secret")],
        gateway_code=args.gateway_code if args.gateway_code is not None
        else settings.get("gateway_code", 1),
        report_delay=args.report_delay if args.report_delay is not None
        else settings.get("report_delay", 0.0),
        stats=stats or {"DELIVRD": 1.0}, faults=faults, record=False,
        held=HeldDelivers.load(args.held) if args.held else None,
        strict=_boolean("strict", _setting(args.strict, settings, "strict", False)),
        timestamp_tolerance=_seconds("timestamp_tolerance", _setting(
            args.timestamp_tolerance, settings, "timestamp_tolerance", 300.0)),
        session=SessionConfig(heartbeat_interval=_seconds("heartbeat_interval", _setting(
            args.heartbeat_interval, settings, "heartbeat_interval", 180.0))),
        heartbeat=_heartbeat(args, settings))
    return config, host.strip("[]") or "127.0.0.1", int(port)


def _setting(flag, settings: dict, key: str, default):
    """The flag if given, else the file's value, else the default."""
    return flag if flag is not None else settings.get(key, default)


def _seconds(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise ValueError(f"{key}: {value!r} is not accepted; give a number of seconds above 0")
    return float(value)


def _boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not accepted; give true or false")
    return value


def _heartbeat(args: argparse.Namespace, settings: dict) -> bool:
    """Whether it sends ACTIVE_TEST: not with --no-heartbeat, yes with --heartbeat-interval,
    else as the file's ``heartbeat`` says (true)."""
    if args.no_heartbeat or args.heartbeat_interval is not None:
        return not args.no_heartbeat
    return _boolean("heartbeat", settings.get("heartbeat", True))


def _account(text: str) -> Account:
    parts = text.split(":")
    if len(parts) not in (2, 3, 4):
        raise ValueError(f"--account {text!r}: use ID:SECRET, ID:SECRET:MAX_CONNECTIONS or "
                         "ID:SECRET:MAX_CONNECTIONS:ACCESS_NUMBER")
    maximum = int(parts[2]) if len(parts) >= 3 else 4
    return Account(parts[0], parts[1], maximum, parts[3] if len(parts) == 4 else "")


def _pair(text: str, kind):
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: use NAME=VALUE")
    return name, kind(value)


def _fault_value(name: str, value):
    if name not in _FAULTS:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(_FAULTS)}")
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        return float(value) if "." in value else int(value)
    return value


async def serve(config: SimulatorConfig, host: str, port: int, duration: float | None) -> Simulator:
    sim = Simulator(config)
    await sim.start(host, port)
    accounts = ", ".join(f"{a.account} (max {a.max_connections})" for a in config.accounts)
    print(f"ISMG simulator listening on {sim.address[0]}:{sim.address[1]}; accounts {accounts}"
          + ("; strict" if config.strict else ""), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except asyncio.TimeoutError:
        pass
    await sim.stop()
    return sim


def simulate_main(args: argparse.Namespace) -> int:
    try:
        config, host, port = build_config(args)
    except (ValueError, OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    setup_logging("warning", secrets=[a.secret for a in config.accounts])
    sim = asyncio.run(serve(config, host, port, args.duration))
    if args.held:
        config.held.save(args.held)
        print(f"held for the next run: {len(config.held)} DELIVER(s) in {args.held}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(sim.counters.items())) or "no traffic"
    print(f"stopped: logins {len(sim.logins)}, {counts}")
    return 0
