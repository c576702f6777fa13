"""``cmpp-gateway decode``: CMPP PDUs, given as hex or as a vectors file, decoded readably."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cmpp

from .pretty import describe

DEFAULT_VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "cmpp2-vectors.json"


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


def add_decode_command(subparsers) -> None:
    decode = subparsers.add_parser("decode",
                                   help="decode CMPP 2.0 PDUs (hex, or a vectors JSON file)")
    decode.add_argument("items", nargs="*", help="hex frames or JSON vector files "
                        "(default: fixtures/cmpp2-vectors.json)")
    decode.add_argument("--report", action="store_true", help="items are status-report bodies")
    decode.add_argument("--strict", action="store_true", help="exit 1 if any PDU is refused")
    decode.set_defaults(func=cmd_decode)
