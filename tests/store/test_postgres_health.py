"""A PostgreSQL store that cannot write says why (never with its password), refuses what it
cannot store instead of holding on to it, and recovers by itself; and its size on disk.

The faults come from tests.postgres_faults: a full disk (the server's own SQLSTATE 53100), a
read-only database, a lost session, and a server that stops answering. A server that stops
altogether is in test_postgres.py.
"""

from __future__ import annotations

import asyncpg
import pytest

from gateway.bench.postgres import LocalPostgres
from gateway.store import NewMessage, PostgresStore, StoreUnavailable
from tests.aio import eventually, run
from tests.postgres_faults import disk_full, disk_room, frozen

PROBE = 0.05                    # seconds between probes while the store cannot write


def message(i: int) -> NewMessage:
    return NewMessage("app1", "cmcc", "13800138000", f"message {i}")


async def opened(url: str, **options) -> PostgresStore:
    store = PostgresStore(url, probe_interval=PROBE, **options)
    await store.open()
    return store


async def admin(url: str, *statements: str) -> list:
    db = await asyncpg.connect(url)
    try:
        return [await db.fetch(statement) for statement in statements]
    finally:
        await db.close()


def writable(store: PostgresStore) -> bool:
    return store.writable_snapshot()[0]


def test_a_full_disk_refuses_new_rows_says_why_and_the_store_recovers_by_itself(postgres_url):
    """Only the probe, which needs a new page of a file, says the store can write again:
    updates in place and reads succeed meanwhile, while every new message fails."""
    async def scenario():
        store = await opened(postgres_url)
        try:
            [kept] = await store.accept([message(1)], now=1.0)
            await admin(postgres_url, *disk_full("messages", "store_probe"))
            with pytest.raises(StoreUnavailable,
                               match=r"cannot write: .*No space left on device.*SQLSTATE 53100"):
                await store.accept([message(2)], now=2.0)
            assert not writable(store) and "53100" in store.writable_snapshot()[1]
            await store.defer(kept.id, until=5.0)                # in place: succeeds
            assert (await store.message(kept.id)).text == "message 1"
            assert not writable(store)
            await admin(postgres_url, *disk_room("messages", "store_probe"))
            await eventually(lambda: writable(store), timeout=10)
            await store.accept([message(3)], now=3.0)
            assert await store.status_counts() == {"accepted": 2}
        finally:
            await store.close()
    run(scenario, timeout=60)


def test_a_database_that_cannot_write_when_the_store_opens_says_so_from_the_start(postgres_url):
    async def scenario():
        store = await opened(postgres_url)
        await store.accept([message(1)], now=1.0)
        await store.close()
        await admin(postgres_url, *disk_full("store_probe"))
        store = await opened(postgres_url)
        try:
            assert not writable(store) and "SQLSTATE 53100" in store.writable_snapshot()[1]
            assert await store.status_counts() == {"accepted": 1}
            await admin(postgres_url, *disk_room("store_probe"))
            await eventually(lambda: writable(store), timeout=10)
        finally:
            await store.close()
    run(scenario, timeout=60)


def test_a_lost_session_to_a_read_only_database_is_not_writable_until_it_may_write(
        postgres_url):
    """The server ends the store's session (as at a failover) and the database it finds
    again is read-only (a standby, SQLSTATE 25006): the store says so, fails what it cannot
    store, and takes up writing by itself once it may, with what it had."""
    name = postgres_url.rsplit("/", 1)[1]

    async def scenario():
        store = await opened(postgres_url)
        try:
            await store.accept([message(1)], now=1.0)
            await admin(postgres_url,
                        f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'cmpp-gateway'")
            await eventually(lambda: "read-only" in store.writable_snapshot()[1], timeout=10)
            assert not writable(store) and "SQLSTATE 25006" in store.writable_snapshot()[1]
            with pytest.raises(StoreUnavailable):
                await store.accept([message(2)], now=2.0)
            await admin(postgres_url, "SET default_transaction_read_only = off",
                        f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            await eventually(lambda: writable(store), timeout=10)
            await store.accept([message(3)], now=3.0)
            assert await store.status_counts() == {"accepted": 2}
            assert await store.query("SELECT text FROM messages ORDER BY id") == \
                [("message 1",), ("message 3",)]
        finally:
            await store.close()
    run(scenario, timeout=60)


def test_a_server_that_stops_answering_fails_operations_and_the_store_recovers(
        require_postgres):
    """A server of its own, frozen twice. A transaction is given up after answer_timeout and
    the operations after it fail at once instead of waiting; a store that is idle finds out by
    its size measurement. Each time, once the server answers again, the store goes on by
    itself."""
    server = LocalPostgres().start()

    async def scenario():
        busy = await opened(server.url(), connect_timeout=1, answer_timeout=1)
        idle = PostgresStore(server.url(), probe_interval=PROBE, connect_timeout=1,
                             answer_timeout=1)
        idle.size_interval = 0.2
        await idle.open()
        try:
            await busy.accept([message(1)], now=1.0)
            with frozen(server):
                with pytest.raises(StoreUnavailable, match="no answer within 1 s"):
                    await busy.accept([message(2)], now=2.0)
                with pytest.raises(StoreUnavailable, match="cannot be reached"):
                    await busy.accept([message(3)], now=3.0)
                await eventually(lambda: not writable(idle), timeout=20)
                assert "cannot be reached: no answer within 1 s" in idle.writable_snapshot()[1]
            await eventually(lambda: writable(busy) and writable(idle), timeout=30)
            await busy.accept([message(4)], now=4.0)
            assert await idle.query("SELECT text FROM messages ORDER BY id") == \
                [("message 1",), ("message 4",)]
        finally:
            await busy.close()
            await idle.close()
    try:
        run(scenario, timeout=90)
    finally:
        server.remove()


def test_the_size_is_that_of_the_store_s_tables_with_their_indexes_and_follows_them(
        postgres_url):
    async def scenario():
        store = PostgresStore(postgres_url)
        store.size_interval = 0.05
        await store.open()
        try:
            empty = store.size_snapshot()
            await store.accept([message(i) for i in range(5000)], now=1.0)
            await eventually(lambda: store.size_snapshot() > empty + 5000 * 60, timeout=10)
            [[(size,)]] = await admin(postgres_url, "SELECT SUM(pg_total_relation_size("
                                      "format('%I', tablename)::regclass))::bigint "
                                      "FROM pg_tables WHERE schemaname = 'public'")
            await eventually(lambda: store.size_snapshot() == size, timeout=10)
        finally:
            await store.close()
    run(scenario, timeout=60)
