"""``cmpp-gateway backup --config FILE DEST``: a consistent copy of the store, taken while the
gateway runs.

SQLite's online backup copies the database page by page inside a read transaction, so the copy
is one committed state even while the daemon writes (WAL mode lets both proceed). The copy is
then checked with ``PRAGMA integrity_check`` and its message count printed. Restoring is
stopping the gateway, putting the copy in place of the store file (and removing the store's
``-wal`` and ``-shm`` files), and starting it again.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from gateway.config import ConfigError, load_config
from gateway.store import is_database_url


def backup(config_path: str, destination: str) -> int:
    """Copy the configured store to ``destination`` (which must not exist). 0 when the copy is
    written and sound; 1 when the store is missing or is a PostgreSQL database, the
    destination exists or the copy fails its check (the bad copy is removed); 2 for an invalid
    configuration."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(error)
        return 2
    if is_database_url(config.gateway.store):
        print("the store is a PostgreSQL database: back it up with the database's own tools "
              "(pg_dump, or the backups of its cluster); this command copies SQLite files")
        return 1
    source, target = Path(config.gateway.store), Path(destination)
    if not source.exists():
        print(f"{source}: no such store")
        return 1
    if target.exists():
        print(f"{target}: already exists; choose a new file name")
        return 1
    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as live, \
                sqlite3.connect(target) as copy:
            live.backup(copy)
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            messages = copy.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    except sqlite3.Error as error:
        target.unlink(missing_ok=True)
        print(f"backup of {source} failed: {error}")
        return 1
    if verdict != "ok":
        target.unlink(missing_ok=True)
        print(f"backup of {source} failed its integrity check: {verdict}")
        return 1
    print(f"{source} -> {target}: {messages} messages, integrity ok")
    return 0


def add_backup_command(subparsers) -> None:
    parser = subparsers.add_parser("backup", help="copy the store consistently, while it runs")
    parser.add_argument("--config", required=True, help="the gateway's TOML configuration")
    parser.add_argument("destination", help="the new file to write the copy to")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return backup(args.config, args.destination)
