"""The store's users: numbers merged or replaced, per app, counted against a limit, and the
number a send on a channel resolves to."""

from __future__ import annotations

import sqlite3

from gateway.store.sqlite.messages import SCHEMA_VERSION
from tests.aio import with_store
from tests.store.test_store import new


def test_an_upload_merges_numbers_and_a_replace_replaces_them():
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
    with_store(scenario)


def test_users_belong_to_their_app():
    async def scenario(store):
        await store.save_users("shop", [("a", {"default": "13800138001"})], False, 10, 1.0)
        await store.save_users("other", [("a", {"default": "13800138002"})], False, 10, 1.0)
        assert await store.user("other", "a") == {"default": "13800138002"}
        assert await store.user_numbers("shop", ["a"], "cmcc") == {"a": "13800138001"}
        assert await store.user_numbers("nobody", ["a"], "cmcc") == {}
        assert await store.delete_user("other", "a") is True
        assert await store.user("shop", "a") == {"default": "13800138001"}
    with_store(scenario)


def test_a_send_resolves_to_the_channels_number_else_the_default():
    async def scenario(store):
        await store.save_users("shop", [("both", {"cmcc": "1", "default": "2"}),
                                        ("default", {"default": "3"}),
                                        ("other", {"unicom": "4"})], False, 10, 1.0)
        found = await store.user_numbers("shop", ["both", "default", "other", "nobody"], "cmcc")
        assert found == {"both": "1", "default": "3", "other": None}
        assert await store.user_numbers("shop", ["both", "other"], "unicom") == {"both": "2",
                                                                                 "other": "4"}
    with_store(scenario)


def test_an_app_holds_at_most_max_users_new_ones_refused_known_ones_updated():
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
    with_store(scenario)


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

