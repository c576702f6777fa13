"""The store's records of the operator's console: apps made there, accounts and sessions,
reviews and the audit trail, the searches on their own connection, each on both backends
(tests.conftest's store_setting); and the migration of an SQLite file written before they
existed (tests/store/test_postgres.py migrates a PostgreSQL store)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.config import AppConfig
from gateway.store import (
    APPROVED,
    PENDING,
    REFUSED,
    AppDirectory,
    AuditNote,
    ConsoleUser,
    MessageQuery,
    SearchTooBroad,
    SqliteStore,
    StoredApp,
)
from gateway.store.postgres import search as postgres_search
from gateway.store.sqlite import search as sqlite_search
from gateway.store.sqlite.messages import SCHEMA_VERSION
from tests.aio import with_store
from tests.store.test_store import new, receipt, submitted

NOTE = AuditNote("alice", "did", "it")


def stored_app(name="Shop!", key="key1", secret="secret-1", **settings) -> StoredApp:
    return StoredApp(name, key, secret, {"channels": ["cmcc"], **settings}, 1.0, 1.0)


def audit_actions(rows) -> list[tuple]:
    return [(e.operator, e.action, e.target, e.detail) for e in rows]


# ----------------------------------------------------------------------------- migration

def test_a_store_of_layout_1_gets_the_console_tables_and_keeps_its_data(tmp_path):
    path = str(tmp_path / "gw.sqlite")

    async def write(store):
        await store.accept([new(1)], now=1.0)
    with_store(write, path)
    with sqlite3.connect(path) as db:                   # as layout 1 left it
        for table in ("apps", "console_users", "console_sessions", "console_keys", "reviews",
                      "audit"):
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version=1")

    async def read(store):
        assert (await store.message(1)).text == "hello 1"
        assert await store.apps() == [] and await store.audit_page(None, 10) == []
        assert await store.create_app(stored_app(), NOTE)
    with_store(read, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4


# ----------------------------------------------------------------------------- apps

def test_apps_are_made_changed_and_rotated_each_with_its_audit_entry(store_setting):
    async def scenario(store):
        assert await store.create_app(stored_app(), AuditNote("alice", "app created", "Shop!"))
        assert not await store.create_app(stored_app(key="other"), NOTE)     # name taken
        assert not await store.create_app(stored_app(name="Other"), NOTE)    # key taken
        assert await store.update_app_settings("Shop!", {"enabled": False},
                                               AuditNote("bob", "app changed", "Shop!"), 2.0)
        assert await store.rotate_app_secret("Shop!", "secret-2", 3602.0,
                                             AuditNote("bob", "secret rotated", "Shop!"), 2.0)
        assert await store.rotate_app_secret("Shop!", "secret-3", 3603.0, NOTE, 3.0)
        assert not await store.update_app_settings("nope", {}, NOTE, 2.0)
        [app] = await store.apps()
        assert (app.master_secret, app.previous_secret, app.previous_until) == \
            ("secret-3", "secret-2", 3603.0)          # the first secret is no longer valid
        assert app.settings == {"enabled": False} and app.updated_at == 3.0
        assert audit_actions(await store.audit_page(None, 10)) == [
            ("alice", "did", "it", ""), ("bob", "secret rotated", "Shop!", ""),
            ("bob", "app changed", "Shop!", ""), ("alice", "app created", "Shop!", "")]
        audit = str(await store.query("SELECT * FROM audit"))
        assert not any(f"secret-{i}" in audit for i in (1, 2, 3))
    with_store(scenario, store_setting)


def configured(name="shop", key="shopkey") -> AppConfig:
    return AppConfig(name, key, "shop-secret", None, ("127.0.0.1",), "", "", ("cmcc",), "", True)


def test_the_directory_serves_configured_and_stored_apps_and_the_old_secret_for_its_grace(
        store_setting):
    now = [100.0]

    async def scenario(store):
        directory = AppDirectory({"shop": configured()}, {"cmcc": None}, store, lambda: now[0])
        assert list(directory) == ["shop"] and not await directory.refresh()
        await store.create_app(stored_app(whitelist=["10.0.0.0/8"]), NOTE)
        await store.create_app(stored_app(name="shop", key="dup"), NOTE)         # shadowed
        await store.create_app(stored_app(name="Dup", key="shopkey"), NOTE)      # shadowed
        assert await directory.refresh() and not await directory.refresh()
        assert sorted(directory) == ["Shop!", "shop"]
        app = directory.by_key("key1")
        assert app.name == "Shop!" and directory["Shop!"] is app
        assert [str(n) for n in directory.networks("Shop!")] == ["10.0.0.0/8"]
        assert directory.secret_matches(app, "secret-1") and not directory.secret_matches(
            app, "secret-2")
        await store.rotate_app_secret("Shop!", "secret-2", 160.0, NOTE, 100.0)
        await directory.refresh()
        app = directory.by_key("key1")
        assert directory.secret_matches(app, "secret-2") and directory.secret_matches(
            app, "secret-1")
        now[0] = 160.0                                   # the grace is over
        assert not directory.secret_matches(app, "secret-1")
        assert directory.by_key("shopkey").master_secret == "shop-secret"
        assert directory.is_configured("shop") and not directory.is_configured("Shop!")
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- accounts

def test_accounts_sessions_and_their_expiry(store_setting):
    async def scenario(store):
        user = ConsoleUser("alice", "admin", "scrypt$...")
        assert await store.put_console_user(user, NOTE, 1.0)
        await store.create_session("s1", "alice", NOTE, 10.0, idle=100, lifetime=1000)
        found = await store.session("s1")
        assert (found.user, found.role, found.created_at, found.seen_at) == \
            ("alice", "admin", 10.0, 10.0)
        await store.touch_session("s1", 50.0)
        assert (await store.session("s1")).seen_at == 50.0
        await store.create_session("s2", "alice", NOTE, 200.0, idle=100, lifetime=1000)
        assert await store.session("s1") is None         # idle past 100 s: pruned
        assert not await store.put_console_user(ConsoleUser("alice", "viewer", "x"), NOTE, 2.0)
        assert await store.session("s2") is None         # a changed account signs out
        await store.create_session("s3", "alice", NOTE, 300.0, idle=100, lifetime=1000)
        assert (await store.session("s3")).role == "viewer"
        assert await store.remove_console_user("alice", NOTE, 3.0)
        assert await store.session("s3") is None and await store.console_users() == []
        assert not await store.remove_console_user("alice", NOTE, 3.0)
    with_store(scenario, store_setting)


def test_an_operator_keeps_at_most_twenty_sessions(store_setting):
    async def scenario(store):
        await store.put_console_user(ConsoleUser("alice", "admin", "x"), NOTE, 0.0)
        for i in range(25):
            await store.create_session(f"s{i}", "alice", NOTE, float(i), idle=100, lifetime=1000)
        rows = await store.query("SELECT id FROM console_sessions ORDER BY created_at")
        assert [r[0] for r in rows] == [f"s{i}" for i in range(5, 25)]
    with_store(scenario, store_setting)


def test_the_first_session_key_stored_is_everyones(store_setting):
    async def scenario(store):
        assert await store.console_key("session", "first") == "first"
        assert await store.console_key("session", "second") == "first"
    with_store(scenario, store_setting)


def test_a_review_sets_the_status_keeps_the_reason_and_audits_it(store_setting):
    async def scenario(store):
        values = {"app": "shop", "type": "notification", "content": "hi", "signature": "",
                  "status": PENDING, "code_length": 0, "ttl": 0, "channel": ""}
        template_id = await store.create_template(values, 1001, 1.0)
        sign_id = await store.create_signature("shop", "商城", [], PENDING, 1.0)
        assert await store.review("template", template_id, REFUSED, "links are not allowed",
                                  AuditNote("alice", "template rejected", "template 1001",
                                            "links are not allowed"), 5.0)
        assert await store.review("sign", sign_id, APPROVED, "", NOTE, 6.0)
        assert not await store.review("template", 77, APPROVED, "", NOTE, 6.0)
        assert [t["status"] for t in await store.templates()] == [REFUSED]
        assert [s["status"] for s in await store.signatures()] == [APPROVED]
        reviews = sorted(await store.last_reviews(), key=lambda r: r.at)
        assert [(r.kind, r.item, r.status, r.reason, r.operator) for r in reviews] == [
            ("template", 1001, REFUSED, "links are not allowed", "alice"),
            ("sign", sign_id, APPROVED, "", "alice")]
        with pytest.raises(ValueError):
            await store.review("sign", sign_id, 7, "", NOTE, 7.0)
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- searches

def search_of(store):
    """The store's search module (each backend's first_id_at and BUDGET)."""
    return sqlite_search if isinstance(store, SqliteStore) else postgres_search


def test_first_id_at_bisects_times_that_grow_with_ids_over_gaps(store_setting):
    async def scenario(store):
        await store.query("CREATE TABLE t (id INTEGER PRIMARY KEY, at REAL)")
        await store.insert_rows("t", ("id", "at"), [(i, i * 10.0) for i in range(1, 200, 3)])

        async def first_id_at(at: float) -> int:
            return await store.read(search_of(store).first_id_at, "t", "at", at)

        async def first_row(at: float) -> int | None:
            [(row,)] = await store.query("SELECT MIN(id) FROM t WHERE id >= ?",
                                         (await first_id_at(at),))
            return row
        assert [await first_row(at) for at in (0, 40.0, 41.0, 70.0, 1960.0)] == [1, 4, 7, 7, 196]
        assert await first_row(1961.0) == 199 and await first_row(1991.0) is None
        assert await first_id_at(1e9) == 200
        await store.query("DELETE FROM t")
        assert await first_id_at(5.0) == 0
    with_store(scenario, store_setting)


def test_messages_are_found_by_number_app_status_time_and_page(store_setting):
    async def scenario(store):
        batches = [([new(i, recipient="13800138000") for i in range(3)], 100.0),
                   ([new(i, app="app2", recipient="13900139000") for i in range(3)], 200.0),
                   ([new(i, recipient="13800138000") for i in range(3)], 300.0)]
        for messages, at in batches:
            await store.accept(messages, at)
        await store.record_submits([submitted(8, 42, at=301.0)], "default")

        async def ids(**query) -> list[int]:
            return [m.id for m in await store.find_messages(MessageQuery(**query))]
        assert await ids() == [9, 8, 7, 6, 5, 4, 3, 2, 1]
        assert await ids(recipients=("13900139000", "8613900139000")) == [6, 5, 4]
        assert await ids(app="app1", since=150.0) == [9, 8, 7]
        assert await ids(since=150.0, until=250.0) == [6, 5, 4]
        assert await ids(status="submitted") == [8]
        assert await ids(message_id=5) == [5] and await ids(message_id=5, app="app1") == []
        assert await ids(before_id=4, limit=2) == [3, 2]
        row = (await store.find_messages(MessageQuery(message_id=8)))[0]
        assert (row.recipient, row.status, row.created_at) == ("13800138000", "submitted", 300.0)
    with_store(scenario, store_setting)


def test_a_search_that_reads_too_much_stops_and_says_so(store_setting, monkeypatch):
    async def scenario(store):
        await store.accept([new(i) for i in range(3000)], 1.0)
        monkeypatch.setattr(search_of(store), "BUDGET", 5)
        with pytest.raises(SearchTooBroad, match="give a time range"):
            await store.find_messages(MessageQuery(recipients=("none",)))
        monkeypatch.setattr(search_of(store), "BUDGET", 50_000)
        assert await store.find_messages(MessageQuery(recipients=("none",))) == []
    with_store(scenario, store_setting)


def test_a_messages_reports_and_callbacks_are_found_in_their_time_range(store_setting):
    async def scenario(store):
        store.queue_status_callbacks_for(None)
        await store.accept([new(i) for i in range(4)], 10.0)
        await store.record_submits([submitted(i, 100 + i, at=11.0) for i in (1, 2, 3, 4)],
                                   "default")
        await store.record_receipts([receipt(100 + i, at=12.0) for i in (1, 3, 4)])
        await store.record_receipts([receipt(102, "UNDELIV", at=13.0)])
        await store.record_receipts([receipt(102, "UNDELIV", deliver_msg_id=555, at=14.0)])
        view = await store.message(2)
        reports = await store.message_receipts(view)
        assert [(r.part, r.msg_id, r.stat, r.status, r.received_at) for r in reports] == [
            (1, 102, "UNDELIV", "undeliverable", 13.0), (1, 102, "UNDELIV", "undeliverable", 14.0)]
        [callback] = await store.message_callbacks(view)
        assert (callback.app, callback.kind, callback.state, callback.attempts) == \
            ("app1", "status", "pending", 0)
        await store.callback_done(callback.id, False, 20.0, 30.0, "HTTP 500")
        [callback] = await store.message_callbacks(view)
        assert (callback.attempts, callback.last_error, callback.next_attempt_at) == \
            (1, "HTTP 500", 30.0)
        [waiting] = await store.waiting_callbacks()
        assert (waiting.app, waiting.pending, waiting.failing) == ("app1", 4, 1)
        assert await store.message_callbacks(await store.message(2)) != []
    with_store(scenario, store_setting)


def test_a_long_read_does_not_hold_up_the_writer(store_setting):
    """The reader has its own connection (SQLite's in its own thread): while it is inside a
    read, writes still commit."""
    release = asyncio.Event()
    entered = []

    def slow_sqlite(db, loop):
        entered.append(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    async def slow_postgres(db, loop):
        entered.append(await db.fetchval("SELECT COUNT(*) FROM messages"))
        await release.wait()
        return await db.fetchval("SELECT COUNT(*) FROM messages")

    async def scenario(store):
        await store.accept([new(1)], 1.0)
        slow = slow_sqlite if isinstance(store, SqliteStore) else slow_postgres
        reading = store.read(slow, asyncio.get_running_loop())
        while not entered:
            await asyncio.sleep(0.01)
        await store.accept([new(2)], 2.0)               # commits while the read waits
        assert await store.status_counts() == {"accepted": 2}
        release.set()
        assert await reading in (1, 2)
    with_store(scenario, store_setting)
