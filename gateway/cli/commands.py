"""The ``cmpp-gateway`` command line: the parser, and ``main``."""

from __future__ import annotations

import argparse

from gateway.bench import add_bench_command

from .backup import add_backup_command
from .check_config import add_check_config_command
from .classify import add_classify_command
from .console_user import add_console_user_command
from .copy_store import add_copy_store_command
from .decode import add_decode_command
from .demo import add_demo_command
from .review import add_review_commands
from .run import add_run_command
from .send import add_send_command
from .simulate import add_simulate_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmpp-gateway",
                                     description="The cmpp-gateway command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_decode_command(sub)
    add_run_command(sub)
    add_demo_command(sub)
    add_check_config_command(sub)
    add_simulate_command(sub)
    add_review_commands(sub)
    add_console_user_command(sub)
    add_backup_command(sub)
    add_copy_store_command(sub)
    add_bench_command(sub)
    add_classify_command(sub)
    add_send_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)

