"""Priorities in the store: pending messages read the most urgent first, then the oldest,
through an index; urgent work committed ahead of bulk work queued before it; a store file of
layout 5 given its messages' priorities."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.store import (
    MARKETING,
    NOTIFICATION,
    PRIORITIES,
    URGENT,
    ApiRequest,
    NewMessage,
    SqliteStore,
)
from gateway.store.sqlite.messages import PENDING, SCHEMA_VERSION
from tests.aio import run, with_store

FROM_START = dict.fromkeys(PRIORITIES, 0)


def new(kind: str = "notification", urgent: bool = False, i: int = 0) -> NewMessage:
    return NewMessage("app1", "cmcc", "13800138000", f"{kind} {i}", kind=kind, urgent=urgent)


def test_pending_messages_come_most_urgent_first_then_oldest_first():
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
    with_store(scenario)


def test_a_page_of_pending_messages_is_read_from_the_index_in_its_order():
    async def scenario(store):
        plan = await store.query(f"EXPLAIN QUERY PLAN {PENDING}", ("cmcc", URGENT, 0, 1.0, 500))
        details = " ".join(row[-1] for row in plan)
        assert "USING INDEX messages_pending (channel=? AND priority=? AND id>?)" in details
        assert "TEMP B-TREE" not in details                   # nothing to sort
    with_store(scenario)


def test_urgent_work_is_committed_ahead_of_bulk_work_queued_before_it(tmp_path):
    async def code(store, release):
        bulk = [store.accept([new(i=i) for i in range(200)], now=1.0) for _ in range(50)]
        urgent = store.accept([new("code")], now=1.0)
        order = _completion_order(bulk, urgent)
        release()
        await asyncio.gather(urgent, *bulk)
        # One transaction at a time (batch_limit 1): the code went ahead of the bulk accepts
        # queued before it, but for the one that was waiting for the lock.
        assert order.index("urgent") <= 1

    async def fetch(store, release):
        bulk = [store.accept([new(i=i) for i in range(200)], now=1.0) for _ in range(50)]
        urgent = store.fetch_pending("cmcc", {URGENT: 0}, 10, now=1.0)
        order = _completion_order(bulk, urgent)
        release()
        await asyncio.gather(urgent, *bulk)
        assert order.index("urgent") <= 1
        assert [p.priority for p in urgent.result()] == [URGENT]

    run(lambda: _held_back(tmp_path, code, fetch))


def test_an_api_request_of_a_code_is_committed_ahead_of_bulk_requests(tmp_path):
    async def scenario(store, release):
        bulk = [store.accept_request(ApiRequest("app1", tuple(new(i=i) for i in range(200))),
                                     1.0) for _ in range(50)]
        urgent = store.accept_request(ApiRequest("app1", (new("code"),)), 1.0)
        order = _completion_order(bulk, urgent)
        release()
        await asyncio.gather(urgent, *bulk)
        assert order.index("urgent") <= 1

    run(lambda: _held_back(tmp_path, scenario))


def _completion_order(bulk: list, urgent) -> list:
    """The order the store resolves the futures in (their callbacks run in that order)."""
    order: list = []
    for i, future in enumerate(bulk):
        future.add_done_callback(lambda _, i=i: order.append(i))
    urgent.add_done_callback(lambda _: order.append("urgent"))
    return order


async def _held_back(tmp_path, *scenarios):
    """Run each scenario on a store of batch_limit 1 whose file another connection holds
    locked until the scenario calls ``release``: what it queues meanwhile waits, in order,
    behind the first operation."""
    path = str(tmp_path / "gw.sqlite")
    store = SqliteStore(path, batch_limit=1)
    await store.open()
    try:
        for scenario in scenarios:
            lock = sqlite3.connect(path, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            await scenario(store, lambda lock=lock: (lock.execute("COMMIT"), lock.close()))
    finally:
        await store.close()


def test_a_store_of_layout_5_gets_its_messages_priorities_from_their_kinds(tmp_path):
    path = str(tmp_path / "gw.sqlite")

    async def write(store):
        await store.accept([new("marketing"), new("notification"), new("code")], now=1.0)
    with_store(write, path)
    with sqlite3.connect(path) as db:                   # as layout 5 left it
        db.execute("DROP INDEX messages_pending")
        db.execute("ALTER TABLE messages DROP COLUMN priority")
        db.execute("CREATE INDEX messages_accepted ON messages(channel, id) "
                   "WHERE status = 'accepted'")
        db.execute("PRAGMA user_version=5")

    async def read(store):
        pending = await store.fetch_pending("cmcc", FROM_START, 10, now=1.0)
        assert [(p.id, p.priority) for p in pending] == \
            [(3, URGENT), (2, NOTIFICATION), (1, MARKETING)]
        [new_code] = await store.accept([new("code")], now=2.0)
        assert (await store.fetch_pending("cmcc", {URGENT: 3}, 10, now=2.0))[0].id == new_code.id
    with_store(read, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 6
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master "
                                                "WHERE type = 'index'")}
        assert "messages_pending" in indexes and "messages_accepted" not in indexes
