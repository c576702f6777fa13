"""``cmpp-gateway copy-store --from SETTING --to SETTING``: a stopped gateway's store, copied
whole from SQLite to PostgreSQL or back (or between two of a kind), and checked.

Each SETTING is what ``[gateway] store`` takes: a file path or a ``postgresql://`` URL (the
password from the variable named by ``--from-password-env`` / ``--to-password-env``, or from
PGPASSWORD or ~/.pgpass). Both stores are opened as the gateway opens them, so the source is
brought to this version's layout and the target is created. The target must hold nothing yet,
and the two layouts must be the same, table for table and column for column. Every table is
then copied row by row as stored (ids, Msg_Ids, times), in chunks ordered by primary key, and
PostgreSQL's id sequences are set to continue after the copied ids. Last, the rows of every
table are counted on both sides and printed; any difference fails the copy.

A PostgreSQL source to which a gateway is connected is refused: stop every gateway first (an
SQLite file cannot tell; stop its gateway too). A copy that fails part way leaves a partial
target: empty it (or make a new database or file) and run the command again.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from gateway.store import (
    PostgresStore,
    Store,
    StoreError,
    StoreUnavailable,
    create_store,
    is_database_url,
)

VALUES_PER_CHUNK = 100_000            # rows of a chunk x their columns: memory stays small


class CopyRefused(Exception):
    """The copy cannot start or did not check out; the message says why."""


async def copy_store(source: Store, target: Store, report=print) -> dict[str, int]:
    """Copy every table of the open ``source`` into the open, empty ``target``; returns the
    rows copied by table. Raises CopyRefused when the target is not empty, the layouts differ,
    or the counts do not match after the copy."""
    tables = await source.layout()
    if tables != await target.layout():
        raise CopyRefused("the two stores' layouts differ; run the same cmpp-gateway version "
                          "on both")
    if any([await _count(target, table) for table in tables]):
        raise CopyRefused("the target already holds records; copy into an empty store only")
    copied = {}
    for table, (columns, key) in tables.items():
        copied[table] = await _copy_table(source, target, table, columns, key)
    await target.continue_ids()
    for table in tables:
        counts = await _count(source, table), await _count(target, table)
        report(f"  {table:<18} {counts[0]:>12,} rows" +
               ("" if counts[0] == counts[1] else f"   MISMATCH: {counts[1]:,} in the target"))
        if counts[0] != counts[1] or counts[0] != copied[table]:
            raise CopyRefused(f"{table}: {counts[0]} rows in the source, {copied[table]} read, "
                              f"{counts[1]} in the target")
    return copied


async def _count(store: Store, table: str) -> int:
    return (await store.query(f'SELECT COUNT(*) FROM "{table}"'))[0][0]


async def _copy_table(source: Store, target: Store, table: str, columns: tuple[str, ...],
                      key: tuple[str, ...]) -> int:
    """The rows of ``table`` in chunks ordered by ``key`` (each chunk read after the last
    key of the one before, so memory stays one chunk whatever the table's size)."""
    names = ", ".join(f'"{c}"' for c in columns)
    order = ", ".join(f'"{c}"' for c in key)
    chunk = max(1, VALUES_PER_CHUNK // len(columns))
    positions = [columns.index(c) for c in key]
    after: tuple | None = None
    total = 0
    while True:
        where = "" if after is None else f"WHERE ({order}) > ({', '.join('?' * len(key))}) "
        rows = await source.query(f'SELECT {names} FROM "{table}" {where}ORDER BY {order} '
                                  f"LIMIT {chunk}", after or ())
        if not rows:
            return total
        await target.insert_rows(table, columns, rows)
        total += len(rows)
        after = tuple(rows[-1][i] for i in positions)


async def _gateways_connected(store: Store) -> int:
    if not isinstance(store, PostgresStore):
        return 0
    rows = await store.query("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = 'cmpp-gateway'")
    return rows[0][0]


def _open(setting: str, password_env: str | None) -> Store:
    password = os.environ.get(password_env) if password_env else None
    if password_env and password is None:
        raise CopyRefused(f"{password_env} is not set in the environment")
    if is_database_url(setting):
        return PostgresStore(setting, password=password,
                             application_name="cmpp-gateway copy-store")
    return create_store(setting)


async def _run_copy(args: argparse.Namespace) -> int:
    if not is_database_url(args.source) and not os.path.exists(args.source):
        raise CopyRefused(f"{args.source}: no such store")
    source = _open(args.source, args.from_password_env)
    target = _open(args.target, args.to_password_env)
    await source.open()
    try:
        await target.open()
        try:
            if await _gateways_connected(source):
                raise CopyRefused("a gateway is connected to the source; stop every gateway "
                                  "first")
            print(f"copying {source.name} -> {target.name}")
            copied = await copy_store(source, target)
        finally:
            await target.close()
    finally:
        await source.close()
    print(f"copied {sum(copied.values()):,} rows in {len(copied)} tables; counts match")
    return 0


def copy_command(args: argparse.Namespace) -> int:
    """0 when copied and checked; 1 when refused or failed (the message says why)."""
    try:
        return asyncio.run(_run_copy(args))
    except (CopyRefused, StoreError, StoreUnavailable) as error:
        print(f"copy-store: {error}")
        return 1


def add_copy_store_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "copy-store", help="copy a stopped gateway's store (SQLite <-> PostgreSQL), checked")
    parser.add_argument("--from", dest="source", required=True, metavar="SETTING",
                        help="the store to copy: a file path or a postgresql:// URL")
    parser.add_argument("--to", dest="target", required=True, metavar="SETTING",
                        help="the empty store to copy into: a file path or a postgresql:// URL")
    parser.add_argument("--from-password-env", metavar="VARIABLE",
                        help="the environment variable holding the source database's password")
    parser.add_argument("--to-password-env", metavar="VARIABLE",
                        help="the environment variable holding the target database's password")
    parser.set_defaults(func=copy_command)
