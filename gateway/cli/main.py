"""The ``cmpp-gateway`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cmpp

from .backup_cli import add_backup_command
from .bench import add_bench_command
from .config import add_check_config_command
from .daemon import add_run_command
from .demo import add_demo_command
from .pretty import describe
from .review_cli import add_review_commands
from .send_cli import add_send_command
from .sim_cli import add_simulate_command
from .status_cli import add_classify_command

DEFAULT_VECTORS = Path(__file__).resolve().parent.parent / "fixtures" / "cmpp2-vectors.json"


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode PDUs given as hex, or the vectors of a JSON fixture file, and print them."""
    status = 0
    for name, data in _inputs(args):
        print(f"== {name}")
        try:
            if args.report:
                report = cmpp.decode_report(data)
                print(describe(cmpp.Deliver(report=report)))
            else:
                print(describe(cmpp.decode(data)))
        except cmpp.CodecError as error:
            print(f"  refused: {error}")
            status = 1 if args.strict else status
        print()
    return status


def _inputs(args: argparse.Namespace):
    if not args.items and not DEFAULT_VECTORS.exists():
        raise SystemExit("cmpp-gateway decode: give hex frames or a vectors JSON file (the "
                         "reference vectors are in a source checkout, not in an installed "
                         "package)")
    for item in args.items or [str(DEFAULT_VECTORS)]:
        path = Path(item)
        if path.suffix == ".json" and path.exists():
            for vector in json.loads(path.read_text(encoding="utf-8")):
                if "report_content" in vector["name"] and not args.report:
                    data = bytes.fromhex(vector["hex"])
                    yield vector["name"] + " (report body, shown inside a DELIVER)", \
                        cmpp.encode(cmpp.Deliver(registered_delivery=1, msg_content=data))
                    continue
                yield vector["name"], bytes.fromhex(vector["hex"])
        else:
            yield item[:24] + ("..." if len(item) > 24 else ""), bytes.fromhex(item)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmpp-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    decode = sub.add_parser("decode", help="decode CMPP 2.0 PDUs (hex, or a vectors JSON file)")
    decode.add_argument("items", nargs="*", help="hex frames or JSON vector files "
                        "(default: fixtures/cmpp2-vectors.json)")
    decode.add_argument("--report", action="store_true", help="items are status-report bodies")
    decode.add_argument("--strict", action="store_true", help="exit 1 if any PDU is refused")
    decode.set_defaults(func=cmd_decode)
    add_run_command(sub)
    add_demo_command(sub)
    add_check_config_command(sub)
    add_simulate_command(sub)
    add_review_commands(sub)
    add_backup_command(sub)
    add_bench_command(sub)
    add_classify_command(sub)
    add_send_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
