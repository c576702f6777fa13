"""A store that cannot write says so, from the start too, and recovers by itself.

``PRAGMA max_page_count`` makes SQLITE_FULL happen without filling a disk: the file may not
grow beyond that many pages, exactly as when the disk has no room left.
"""

from __future__ import annotations

import pytest

from gateway.store import NewMessage, SqliteStore, StoreUnavailable
from tests.aio import eventually, run

PROBE = 0.05                         # seconds between probes while the store cannot write


def message(i: int) -> NewMessage:
    return NewMessage("app1", "cmcc", "13800138000", f"message {i} " + "x" * 400)


async def fill(store: SqliteStore) -> int:
    """Accept messages until the store refuses one; returns how many went in."""
    for i in range(10_000):
        try:
            await store.accept([message(i)], now=1.0)
        except StoreUnavailable:
            return i
    raise AssertionError("the store never filled up")


async def pages(store: SqliteStore) -> int:
    return (await store.query("PRAGMA page_count"))[0][0]


async def opened(path: str, **options) -> SqliteStore:
    store = SqliteStore(path, probe_interval=PROBE, **options)
    await store.open()
    return store


def test_a_full_store_refuses_writes_says_why_and_recovers_by_itself(tmp_path):
    async def scenario():
        store = await opened(str(tmp_path / "gw.sqlite"))
        await store.query("PRAGMA max_page_count = 40")
        assert store.writable_snapshot() == (True, "")
        kept = await fill(store)
        writable, reason = store.writable_snapshot()
        assert not writable and "database or disk is full (SQLITE_FULL)" in reason
        assert (await store.status_counts())["accepted"] == kept        # reads go on
        with pytest.raises(StoreUnavailable, match="SQLITE_FULL"):
            await store.accept([message(-1)], now=2.0)
        await store.query("PRAGMA max_page_count = 100000")             # room again
        await eventually(lambda: store.writable_snapshot()[0], timeout=10)
        await store.accept([message(-2)], now=3.0)
        await store.close()
    run(scenario)


def test_writes_that_succeed_in_place_do_not_make_a_full_store_look_writable(tmp_path):
    """Only the probe, which needs a new page of the file, says the store can write again:
    updates in place succeed while every new message would still fail."""
    async def scenario():
        store = await opened(str(tmp_path / "gw.sqlite"))
        await store.query("PRAGMA max_page_count = 40")
        await fill(store)
        for i in range(1, 20):
            await store.defer(i, until=100.0 + i)                      # in place: succeeds
        await store.query("SELECT 1")
        assert not store.writable_snapshot()[0]
        await store.close()
    run(scenario)


def test_a_store_opened_full_says_so_from_the_start(tmp_path):
    path = str(tmp_path / "gw.sqlite")

    async def scenario():
        store = await opened(path)
        await store.accept([message(i) for i in range(50)], now=1.0)
        size = await pages(store)
        await store.close()
        full = await opened(path, max_pages=size)
        writable, reason = full.writable_snapshot()
        assert not writable and "SQLITE_FULL" in reason
        assert (await full.status_counts()) == {"accepted": 50}
        await full.close()
    run(scenario)


def test_an_operation_that_fails_for_its_own_reasons_leaves_the_store_writable(tmp_path):
    async def scenario():
        store = await opened(str(tmp_path / "gw.sqlite"))
        with pytest.raises(Exception) as failed:
            await store.query("SELECT * FROM no_such_table")
        assert not isinstance(failed.value, StoreUnavailable)
        assert store.writable_snapshot() == (True, "")
        await store.close()
    run(scenario)
