"""Priorities in the store, on both backends (tests.conftest's store_setting): pending
messages read the most urgent first, then the oldest, through an index; urgent work committed
ahead of bulk work queued before it, and the pipeline's work taking turns with it, a bounded
amount a transaction; a store of layout 5 given its messages' priorities."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg

from gateway.store import (
    MARKETING,
    NOTIFICATION,
    PRIORITIES,
    URGENT,
    ApiRequest,
    NewMessage,
    PostgresStore,
    SegmentResult,
    SqliteStore,
    is_database_url,
)
from gateway.store.lanes import BULK_ROWS
from gateway.store.postgres import schema as postgres_schema
from gateway.store.sqlite.messages import PENDING, SCHEMA_VERSION
from tests.aio import run, with_store

FROM_START = dict.fromkeys(PRIORITIES, 0)


def new(kind: str = "notification", urgent: bool = False, i: int = 0) -> NewMessage:
    return NewMessage("app1", "cmcc", "13800138000", f"{kind} {i}", kind=kind, urgent=urgent)


def test_pending_messages_come_most_urgent_first_then_oldest_first(store_setting):
    async def scenario(store):
        accepted = await store.accept([new("marketing"), new("notification"), new("code"),
                                       new("notification", urgent=True), new("marketing"),
                                       new("notification"), new("code")], now=1.0)
        ids = [a.id for a in accepted]
        pending = await store.fetch_pending("cmcc", FROM_START, 10, now=1.0)
        assert [(p.id, p.priority) for p in pending] == [
            (ids[2], URGENT), (ids[3], URGENT), (ids[6], URGENT),
            (ids[1], NOTIFICATION), (ids[5], NOTIFICATION),
            (ids[0], MARKETING), (ids[4], MARKETING)]
        # A page ends where its limit does, the most urgent kept.
        assert [p.id for p in await store.fetch_pending("cmcc", FROM_START, 4, now=1.0)] == \
            [ids[2], ids[3], ids[6], ids[1]]
        # Each priority is read from its own id on; one left out is not read.
        after = {URGENT: ids[3], NOTIFICATION: ids[1], MARKETING: 0}
        assert [p.id for p in await store.fetch_pending("cmcc", after, 10, now=1.0)] == \
            [ids[6], ids[5], ids[0], ids[4]]
        assert [p.id for p in await store.fetch_pending("cmcc", {URGENT: 0}, 10, now=1.0)] == \
            [ids[2], ids[3], ids[6]]
    with_store(scenario, store_setting)


def test_a_page_of_pending_messages_is_read_from_the_index_in_its_order():
    async def scenario(store):
        plan = await store.query(f"EXPLAIN QUERY PLAN {PENDING}", ("cmcc", URGENT, 0, 1.0, 500))
        details = " ".join(row[-1] for row in plan)
        assert "USING INDEX messages_pending (channel=? AND priority=? AND id>?)" in details
        assert "TEMP B-TREE" not in details                   # nothing to sort
    with_store(scenario)


def test_urgent_work_is_committed_ahead_of_bulk_work_queued_before_it(store_setting):
    async def code(store, release):
        bulk = [store.accept([new(i=i) for i in range(200)], now=1.0) for _ in range(50)]
        urgent = store.accept([new("code")], now=1.0)
        order = _completion_order(bulk, urgent)
        await release()
        await asyncio.gather(urgent, *bulk)
        # One transaction at a time (batch_limit 1): the code went ahead of the bulk accepts
        # queued before it, but for the one that was waiting for the lock.
        assert order.index("urgent") <= 1

    async def fetch(store, release):
        bulk = [store.accept([new(i=i) for i in range(200)], now=1.0) for _ in range(50)]
        urgent = store.fetch_pending("cmcc", {URGENT: 0}, 10, now=1.0)
        order = _completion_order(bulk, urgent)
        await release()
        await asyncio.gather(urgent, *bulk)
        assert order.index("urgent") <= 1
        assert [p.priority for p in urgent.result()] == [URGENT]

    run(lambda: _held_back(store_setting, code, fetch))


def test_an_api_request_of_a_code_is_committed_ahead_of_bulk_requests(store_setting):
    async def scenario(store, release):
        bulk = [store.accept_request(ApiRequest("app1", tuple(new(i=i) for i in range(200))),
                                     1.0) for _ in range(50)]
        urgent = store.accept_request(ApiRequest("app1", (new("code"),)), 1.0)
        order = _completion_order(bulk, urgent)
        await release()
        await asyncio.gather(urgent, *bulk)
        assert order.index("urgent") <= 1

    run(lambda: _held_back(store_setting, scenario))


def test_pipeline_work_is_committed_between_bulk_accepts_queued_before_it(store_setting):
    """SUBMIT outcomes, reports and fetches (the pipeline's lane) take turns with the bulk
    work queued before them, instead of waiting for all of it."""
    async def submits(store, release):
        await release()                           # first a message to record a SUBMIT of
        [first] = await store.accept([new()], now=1.0)
        release = await _lock(store_setting)
        bulk = [store.accept([new(i=i) for i in range(BULK_ROWS // 2 + 1)], now=1.0)
                for _ in range(6)]           # each alone in a transaction
        outcome = store.record_submits([SegmentResult(first.id, "cmcc", 1, 1, 0, 77, at=2.0)],
                                       "default")
        order = _completion_order(bulk, outcome)
        await release()
        await asyncio.gather(outcome, *bulk)
        assert order.index("urgent") <= 1

    async def fetch(store, release):
        bulk = [store.accept([new(i=i) for i in range(BULK_ROWS // 2 + 1)], now=1.0)
                for _ in range(6)]           # each alone in a transaction
        fetched = store.fetch_pending("cmcc", FROM_START, 10, now=1.0)
        order = _completion_order(bulk, fetched)
        await release()
        await asyncio.gather(fetched, *bulk)
        assert order.index("urgent") <= 1

    run(lambda: _held_back(store_setting, fetch, submits, batch_limit=4000))


def test_a_transaction_holds_a_bounded_amount_of_bulk_work(store_setting):
    async def scenario(store, release):
        commits = store.commits
        bulk = [store.accept([new(i=i) for i in range(BULK_ROWS // 2 + 1)], now=1.0)
                for _ in range(6)]
        await release()
        await asyncio.gather(*bulk)
        assert store.commits - commits == 6       # each alone: two would be over BULK_ROWS

    run(lambda: _held_back(store_setting, scenario, batch_limit=4000))


def _completion_order(bulk: list, urgent) -> list:
    """The order the store resolves the futures in (their callbacks run in that order)."""
    order: list = []
    for i, future in enumerate(bulk):
        future.add_done_callback(lambda _, i=i: order.append(i))
    urgent.add_done_callback(lambda _: order.append("urgent"))
    return order


async def _held_back(setting: str, *scenarios, batch_limit: int = 1):
    """Run each scenario on a store of ``batch_limit`` whose messages another connection keeps
    from being written until the scenario awaits ``release``: what it queues meanwhile waits,
    in order, behind the first operation."""
    if is_database_url(setting):
        store = PostgresStore(setting, batch_limit=batch_limit)
    else:
        store = SqliteStore(setting, batch_limit=batch_limit)
    await store.open()
    try:
        for scenario in scenarios:
            await scenario(store, await _lock(setting))
    finally:
        await store.close()


async def _lock(setting: str):
    """Lock the store's messages against writes from another connection; returns the
    coroutine function that releases them."""
    if is_database_url(setting):
        db = await asyncpg.connect(setting)
        await db.execute("BEGIN; LOCK TABLE messages IN EXCLUSIVE MODE")   # reads go on

        async def release():
            await db.execute("COMMIT")
            await db.close()
        return release
    lock = sqlite3.connect(setting, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")

    async def release():
        lock.execute("COMMIT")
        lock.close()
    return release


async def _read_migrated_priorities(store) -> None:
    """A marketing, a notification and a code stored under layout 5, read after the
    migration: by priority, the code first; a code accepted after it is fetched as urgent."""
    pending = await store.fetch_pending("cmcc", FROM_START, 10, now=1.0)
    assert [(p.id, p.priority) for p in pending] == \
        [(3, URGENT), (2, NOTIFICATION), (1, MARKETING)]
    [new_code] = await store.accept([new("code")], now=2.0)
    assert (await store.fetch_pending("cmcc", {URGENT: 3}, 10, now=2.0))[0].id == new_code.id


def test_a_store_of_layout_5_gets_its_messages_priorities_from_their_kinds(tmp_path):
    path = str(tmp_path / "gw.sqlite")

    async def write(store):
        await store.accept([new("marketing"), new("notification"), new("code")], now=1.0)
    with_store(write, path)
    with sqlite3.connect(path) as db:                   # as layout 5 left it
        db.execute("DROP INDEX messages_pending")
        db.execute("DROP INDEX messages_msg_id")                        # layout 7's
        for column in ("sends", "connection", "result", "msg_id", "priority"):
            db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
        db.execute("CREATE INDEX messages_accepted ON messages(channel, id) "
                   "WHERE status = 'accepted'")
        db.execute("PRAGMA user_version=5")

    async def read(store):
        await _read_migrated_priorities(store)
    with_store(read, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 7
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master "
                                                "WHERE type = 'index'")}
        assert "messages_pending" in indexes and "messages_accepted" not in indexes
        assert "messages_msg_id" in indexes


def test_a_postgresql_store_of_layout_5_gets_its_messages_priorities_from_their_kinds(
        postgres_url):
    async def write(store):
        await store.accept([new("marketing"), new("notification"), new("code")], now=1.0)
    with_store(write, postgres_url)

    async def as_layout_5():                            # as layout 5 left it
        db = await asyncpg.connect(postgres_url)
        try:
            await db.execute("ALTER TABLE messages DROP COLUMN priority, "   # and its index
                             "DROP COLUMN IF EXISTS msg_id, DROP COLUMN IF EXISTS result, "
                             "DROP COLUMN IF EXISTS connection, DROP COLUMN IF EXISTS sends; "
                             "CREATE INDEX messages_accepted ON messages(channel, id) "
                             "WHERE status = 'accepted'; UPDATE store_version SET version = 5")
        finally:
            await db.close()
    run(as_layout_5)

    async def read(store):
        await _read_migrated_priorities(store)
        assert await store.query("SELECT version FROM store_version") == \
            [(postgres_schema.SCHEMA_VERSION,)] and postgres_schema.SCHEMA_VERSION >= 6
        indexes = {name for (name,) in await store.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'")}
        assert "messages_pending" in indexes and "messages_accepted" not in indexes
    with_store(read, postgres_url)
