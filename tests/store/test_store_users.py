"""The store's users: numbers merged or replaced, per app, counted against a limit, and the
number a send on a channel resolves to; each on both backends (tests.conftest's
store_setting). The search's plan and the migration are each backend's own."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.store import AuditNote
from gateway.store.postgres import users as postgres_users
from gateway.store.records import prefix_end
from gateway.store.sqlite import users as users_sql
from gateway.store.sqlite.messages import SCHEMA_VERSION
from tests.aio import with_store
from tests.store.test_store import new


def test_an_upload_merges_numbers_and_a_replace_replaces_them(store_setting):
    async def scenario(store):
        assert await store.save_users("shop", [("a", {"cmcc": "13800138001"}),
                                               ("a", {"default": "13800138002"})],
                                      False, 10, 1.0) == [True, True]
        assert await store.user("shop", "a") == {"cmcc": "13800138001", "default": "13800138002"}
        await store.save_users("shop", [("a", {"cmcc": "13800138003"})], False, 10, 2.0)
        assert await store.user("shop", "a") == {"cmcc": "13800138003", "default": "13800138002"}
        await store.save_users("shop", [("a", {"unicom": "13800138004"})], True, 10, 3.0)
        assert await store.user("shop", "a") == {"unicom": "13800138004"}
        assert await store.delete_user("shop", "a") is True
        assert await store.user("shop", "a") is None
        assert await store.delete_user("shop", "a") is False
    with_store(scenario, store_setting)


def test_users_belong_to_their_app(store_setting):
    async def scenario(store):
        await store.save_users("shop", [("a", {"default": "13800138001"})], False, 10, 1.0)
        await store.save_users("other", [("a", {"default": "13800138002"})], False, 10, 1.0)
        assert await store.user("other", "a") == {"default": "13800138002"}
        assert await store.user_numbers("shop", ["a"], "cmcc") == {"a": "13800138001"}
        assert await store.user_numbers("nobody", ["a"], "cmcc") == {}
        assert await store.delete_user("other", "a") is True
        assert await store.user("shop", "a") == {"default": "13800138001"}
    with_store(scenario, store_setting)


def test_a_send_resolves_to_the_channels_number_else_the_default(store_setting):
    async def scenario(store):
        await store.save_users("shop", [("both", {"cmcc": "1", "default": "2"}),
                                        ("default", {"default": "3"}),
                                        ("other", {"unicom": "4"})], False, 10, 1.0)
        found = await store.user_numbers("shop", ["both", "default", "other", "nobody"], "cmcc")
        assert found == {"both": "1", "default": "3", "other": None}
        assert await store.user_numbers("shop", ["both", "other"], "unicom") == {"both": "2",
                                                                                 "other": "4"}
    with_store(scenario, store_setting)


def test_an_app_holds_at_most_max_users_new_ones_refused_known_ones_updated(store_setting):
    async def scenario(store):
        stored = await store.save_users("shop", [("a", {"default": "1"}), ("b", {"default": "1"}),
                                                 ("a", {"cmcc": "2"}), ("c", {"default": "1"})],
                                        False, 2, 1.0)
        assert stored == [True, True, True, False]
        assert await store.save_users("shop", [("b", {"cmcc": "3"}), ("d", {"default": "1"})],
                                      False, 2, 2.0) == [True, False]
        assert await store.save_users("other", [("d", {"default": "1"})], False, 2, 2.0) == [True]
        await store.delete_user("shop", "a")
        assert await store.save_users("shop", [("d", {"default": "1"})], False, 2, 3.0) == [True]
        assert await store.query("SELECT app, users FROM user_counts ORDER BY app") == \
            [("other", 1), ("shop", 2)]
    with_store(scenario, store_setting)


def test_a_store_file_of_layout_1_gains_the_users_tables_and_keeps_its_messages(tmp_path):
    path = str(tmp_path / "gw.sqlite")

    async def before(store):
        await store.accept([new(1)], now=1.0)
    with_store(before, path)
    db = sqlite3.connect(path)                    # as the version before users left it
    db.executescript("DROP TABLE users; DROP TABLE user_counts; PRAGMA user_version=1;")
    db.close()

    async def after(store):
        assert (await store.message(1)).text == "hello 1"
        assert await store.save_users("shop", [("a", {"default": "1"})], False, 10, 2.0) == [True]
        assert await store.user("shop", "a") == {"default": "1"}
    with_store(after, path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
    db.close()


def test_a_search_pages_through_an_apps_users_by_userid_prefix(store_setting):
    async def scenario(store):
        users = [(f"zhang{n:02d}", {"default": f"138001380{n:02d}"}) for n in range(12)]
        users += [("zhan", {"cmcc": "13900139000"}), ("zhao", {"default": "13700137000"}),
                  ("张三", {"default": "13600136000"}), ("张", {"default": "13600136001"})]
        await store.save_users("shop", users, False, 100, 5.0)
        await store.save_users("other", [("zhang99", {"default": "13500135000"})],
                               False, 100, 5.0)
        first = await store.find_users("shop", "zhang", None, 5)
        assert [u.userid for u in first] == [f"zhang{n:02d}" for n in range(5)]
        assert (first[0].phones, first[0].updated_at) == ({"default": "13800138000"}, 5.0)
        rest = await store.find_users("shop", "zhang", first[-1].userid, 100)
        assert [u.userid for u in rest] == [f"zhang{n:02d}" for n in range(5, 12)]
        assert [u.userid for u in await store.find_users("shop", "zha", "zhang11", 10)] == \
            ["zhao"]
        assert [u.userid for u in await store.find_users("shop", "张", None, 10)] == \
            ["张", "张三"]
        assert [u.userid for u in await store.find_users("shop", "", "zhao", 10)] == \
            ["张", "张三"]
        assert await store.find_users("shop", "zhang", "zz", 10) == []
        assert await store.find_users("shop", "nobody", None, 10) == []
        assert await store.user_count("shop") == 16 and await store.user_count("none") == 0
    with_store(scenario, store_setting)


def test_a_search_reads_one_range_of_the_primary_key(tmp_path):
    path = str(tmp_path / "gw.sqlite")
    with_store(lambda store: store.save_users("shop", [("a", {"default": "1"})], False, 9, 1.0),
               path)
    captured = []
    db = sqlite3.connect(path)
    db.set_trace_callback(captured.append)
    users_sql.find_users(db, "shop", "zh", "zhang01", 50)
    plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {captured[0]}"))
    db.close()
    assert "SEARCH users USING PRIMARY KEY (app=? AND userid>? AND userid<?)" in plan, plan
    assert "TEMP B-TREE" not in plan                              # no sort: the key's order


class Recording:
    """A connection that keeps the statements it is given, with their arguments."""

    def __init__(self, db) -> None:
        self.db, self.statements = db, []

    async def fetch(self, statement: str, *args):
        self.statements.append((statement, args))
        return await self.db.fetch(statement, *args)


def test_a_postgresql_search_reads_one_range_of_the_primary_key_in_code_point_order(
        postgres_url):
    async def explained(db):
        recording = Recording(db)
        await postgres_users.find_users(recording, "shop", "zh", "zhang01", 50)
        [(statement, args)] = recording.statements
        return [row[0] for row in await db.fetch(f"EXPLAIN {statement}", *args)]

    async def scenario(store):
        await store.save_users("shop", [("a", {"default": "1"})], False, 9, 1.0)
        plan = "\n".join(await store.read(explained))
        assert "Index Scan using users_pkey on users" in plan, plan
        assert "Index Cond: ((app = 'shop'::text) AND (userid > 'zhang01'::text) AND " \
            "(userid < 'zi'::text))" in plan, plan
        assert "Sort" not in plan and "Filter" not in plan, plan  # the key's order, its range
        # Code point order whatever the database's collation, as SQLite compares userids.
        [(collation,)] = await store.query(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_name = 'users' AND column_name = 'userid'")
        assert collation == "C"
    with_store(scenario, postgres_url)


@pytest.mark.parametrize("prefix, end", [
    ("", None), ("a", "b"), ("zh", "zi"), ("张", "弡"), ("a\U0010ffff", "b"),
    ("\U0010ffff", None), ("a\ud7ff", "a\ue000")])
def test_a_prefixs_end_is_the_least_text_after_all_that_begin_with_it(prefix, end):
    assert prefix_end(prefix) == end


def test_a_user_deleted_with_a_note_is_audited_in_the_same_transaction(store_setting):
    async def scenario(store):
        await store.save_users("shop", [("a", {"default": "13800138000"})], False, 9, 1.0)
        note = AuditNote("alice", "user deleted", "user a of app shop")
        assert await store.delete_user("shop", "a", note, 7.0) is True
        assert await store.delete_user("shop", "a", note, 8.0) is False      # nothing to note
        entries = await store.audit_page(None, 10)
        assert [(e.at, e.operator, e.action, e.target) for e in entries] == \
            [(7.0, "alice", "user deleted", "user a of app shop")]
        assert await store.user_count("shop") == 0
    with_store(scenario, store_setting)
