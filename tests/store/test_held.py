"""Status reports that match no segment (yet): found by index, counted, and expired.

Issue 12 measured a frozenset of every such report, rebuilt by each commit and loaded whole at
open: 10 k messages took 14 s with 400 k held, 37 s after a restart. These tests assert on the
work done, not on time: memory that does not grow with the reports held, and lookups that go
through the index. On both backends (tests.conftest's store_setting), but for the first,
which is SQLite's own.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

from gateway.status import DeliveryStatus, load_tables
from gateway.store import (
    NewMessage,
    Receipt,
    SegmentResult,
    SqliteStore,
    Store,
    create_store,
)
from tests.aio import run, with_store
from tests.store.test_retention import plan_nodes, statements_run, table_scans

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")
UNKNOWN = 1 << 60                  # Msg_Ids no segment has


def stray(count: int, first: int = 0, at: float = 5.0) -> list[Receipt]:
    return [Receipt("cmcc", "cmcc#0", UNKNOWN + i, UNKNOWN + i, CODES.classify("DELIVRD"),
                    received_at=at) for i in range(first, first + count)]


def submitted(message_id: int, msg_id: int, at: float = 10.0) -> SegmentResult:
    return SegmentResult(message_id, "cmcc", 1, 1, 0, msg_id, connection="cmcc#0", at=at)


async def hold(store: Store, count: int, first: int = 0, at: float = 5.0) -> None:
    for start in range(first, first + count, 5000):
        await store.record_receipts(stray(min(5000, first + count - start), start, at))


async def indexes_used(store, statement: str, parameters: tuple) -> set[str]:
    """The indexes ``statement``'s plan reads (as the store plans it, its statistics as they
    are: here, none yet)."""
    if isinstance(store, SqliteStore):
        plan = await store.query(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return {word for row in plan for word in row[-1].split()}
    [(plan,)] = await store.query(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
    return {node.get("Index Name") for node in plan_nodes(json.loads(plan)[0])}


def traced() -> int:
    return tracemalloc.get_traced_memory()[0]


async def settled(store: Store) -> int:
    """Traced memory once the writer has let go of the last batch (the next one replaces it)."""
    await store.query("SELECT 1")
    gc.collect()
    return traced()


def test_holding_more_reports_takes_no_more_memory_nor_does_a_commit_beside_them(tmp_path):
    """SQLite's: PostgreSQL's store never held reports in memory, and its commits cost a
    fixed 260 KB or so of asyncpg's buffers whether 0 or 30,000 reports wait (measured)."""
    async def scenario():
        store = SqliteStore(str(tmp_path / "gw.sqlite"))
        await store.open()
        await hold(store, 5000)         # the same statements as below: their caches warm up
        tracemalloc.start()
        try:
            before = await settled(store)
            await hold(store, 30_000, first=5000)
            grown = await settled(store) - before
            [a] = await store.accept([NewMessage("app1", "cmcc", "13800138000", "hi")], now=1.0)
            tracemalloc.reset_peak()
            base = traced()
            await store.record_submits([submitted(a.id, 77)], "default")
            commit_peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert await store.unmatched_receipts() == 35_000
        await store.close()
        # A set of 35 k keys is over 2 MB; what is left is the statements' own garbage.
        assert commit_peak < 256 * 1024, commit_peak
        assert grown < 256 * 1024, grown
    run(scenario)


def test_opening_a_store_with_many_held_reports_loads_none_of_them(store_setting):
    async def fill():
        store = create_store(store_setting)
        await store.open()
        await hold(store, 30_000)
        await store.close()
    run(fill)

    async def reopen():
        store = create_store(store_setting)
        tracemalloc.start()
        try:
            before = traced()
            await store.open()
            opened = traced() - before
        finally:
            tracemalloc.stop()
        assert store.unmatched_snapshot() == 30_000
        await store.close()
        assert opened < 256 * 1024, opened
    run(reopen)


def test_a_submit_finds_its_early_reports_through_the_unmatched_index(store_setting):
    """Also where the statistics were taken while no report waited (they say reading every
    waiting report is free: on PostgreSQL, an index of them all then tied with the one that
    finds a Msg_Id's)."""
    async def scenario(store):
        matched = [a.id for a in await store.accept(
            [NewMessage("app1", "cmcc", "13800138000", f"old {i}") for i in range(300)],
            now=1.0)]
        await store.record_submits([submitted(m, 1 + i) for i, m in enumerate(matched)],
                                   "default")
        await store.record_receipts([Receipt("cmcc", "cmcc#0", 1000 + i, 1 + i,
                                             CODES.classify("DELIVRD"), received_at=5.0)
                                     for i in range(300)])
        await store.query("ANALYZE")
        await hold(store, 5000)
        ids = [a.id for a in await store.accept(
            [NewMessage("app1", "cmcc", "13800138000", f"hi {i}") for i in range(200)], now=1.0)]
        outcome = []

        async def submit():              # a commit's worth of SUBMIT_RESPs, each one early
            outcome.extend(await store.record_submits(
                [submitted(message_id, UNKNOWN + i) for i, message_id in enumerate(ids)],
                "default"))
        statements = await statements_run(store, submit)
        assert outcome == [DeliveryStatus.DELIVERED] * 200
        assert await store.unmatched_receipts() == 4800 and store.unmatched_snapshot() == 4800
        reads = [await indexes_used(store, s, p) for s, p in statements.items()
                 if "FROM receipts" in s]
        assert any("receipts_unmatched" in indexes for indexes in reads), statements
        assert not any("receipts_unmatched_age" in indexes for indexes in reads), statements
        assert {s: scans for s, p in statements.items()
                if (scans := await table_scans(store, s, p))} == {}
    with_store(scenario, store_setting)


def test_the_count_of_held_reports_follows_commits_and_rollbacks(store_setting):
    async def scenario(store):
        await hold(store, 3)
        [a, b] = await store.accept([NewMessage("app1", "cmcc", "1", "x"),
                                     NewMessage("app1", "cmcc", "2", "y")], now=1.0)
        await store.record_submits([submitted(a.id, UNKNOWN), submitted(b.id, UNKNOWN + 1)],
                                   "default")
        assert store.unmatched_snapshot() == 1
        failed = store.record_receipts(stray(2, first=10) + ["not a receipt"])
        try:
            await failed
        except Exception:  # noqa: BLE001 - the operation fails whole, nothing is kept
            pass
        assert store.unmatched_snapshot() == 1
        assert (await store.query("SELECT COUNT(*) FROM receipts WHERE message_id IS NULL")) \
            == [(1,)]
    with_store(scenario, store_setting)
