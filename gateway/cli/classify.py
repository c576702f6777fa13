"""``cmpp-gateway classify STAT...``: what a status report's Stat means to the gateway, for an
operator writing or checking a provider's receipt-code table."""

from __future__ import annotations

import argparse

from gateway.config import ConfigError, load_config
from gateway.status import (
    Classification,
    DeliveryStatus,
    ReceiptCodes,
    TableError,
    provider_tables,
)


def classify(stats: list[str], provider: str, providers: str) -> list[str]:
    """One line per Stat: the common status (or that it is not final), whether the cause is
    temporary, whether the code is listed or matched by a prefix rule, the JSMS status code a
    "jsms" callback reports for it, and its meaning. Raises TableError for tables that cannot
    be used."""
    codes = provider_tables(providers).for_provider(provider)
    return [describe(codes.classify(stat), codes) for stat in stats]


def describe(c: Classification, codes: ReceiptCodes) -> str:
    status = c.status.value if c.status is not None else "pending (not final; keep waiting)"
    failed = c.status is not None and c.status is not DeliveryStatus.DELIVERED
    cause = (", temporary cause" if c.temporary else ", permanent cause") if failed else ""
    how = "listed" if c.known else "not listed (prefix rule or unknown)"
    jsms = f", JSMS {codes.jsms_status(c.status, c.stat)}" if c.status is not None else ""
    meaning = f": {c.meaning}" if c.meaning else ""
    return f"{c.stat!r} -> {status}{cause}, {how}{jsms}{meaning}"


def add_classify_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify", help="show how a provider's receipt-code table reads Stat values")
    parser.add_argument("stats", nargs="+", metavar="STAT", help="Stat values, e.g. MK:0012")
    parser.add_argument("--provider", default="default",
                        help="the provider whose table to use (default: default)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="take [gateway] providers from this configuration")
    source.add_argument("--providers", default="",
                        help="a directory of tables over the built-in ones")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    providers = args.providers
    try:
        if args.config:
            providers = load_config(args.config).gateway.providers
        lines = classify(args.stats, args.provider, providers)
    except (ConfigError, TableError) as error:
        print(error)
        return 2
    print("\n".join(lines))
    return 0
