"""``cmpp-gateway check-config FILE``: validate a configuration and print it, secrets masked."""

from __future__ import annotations

import argparse

from gateway.config import ConfigError, describe_config, load_config, world_readable_warning
from gateway.status import TableError, provider_tables


def check_config_main(path: str) -> int:
    """``cmpp-gateway check-config FILE``: print the configuration (password masked) and the
    receipt-code table each channel uses, and return 0; or print every problem (of the file or
    of the tables) and return 1. Either way, warn when the file is world-readable."""
    try:
        config = load_config(path)
        print(describe_config(config))
        status = 0
    except ConfigError as error:
        print(error)
        status = 1
    else:
        try:
            tables = provider_tables(config.gateway.providers)
        except TableError as error:
            print(error)
            status = 1
        else:
            print()
            for channel in config.channels.values():
                print(f"# channel {channel.name}: receipt codes of provider {channel.provider!r} "
                      f"from {tables.path_for(channel.provider)}")
    warning = world_readable_warning(path)
    if warning:
        print(warning)
    return status


def add_check_config_command(subparsers) -> argparse.ArgumentParser:
    """Register ``check-config FILE`` on an argparse ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "check-config", help="validate a configuration file and print it, passwords masked")
    parser.add_argument("file", help="the TOML configuration file")
    parser.set_defaults(func=lambda args: check_config_main(args.file))
    return parser
