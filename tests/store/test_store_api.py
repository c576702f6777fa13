"""The store's API records decide what must hold between requests and gateways: a key names
one request, a number gets its codes only, a code can be guessed a few times only; and a
store of layout 4 gains what layout 5 added, keeping what it held. On both backends
(tests.conftest's store_setting); the SQLite file's migration is its own (test_postgres.py
migrates a PostgreSQL store)."""

from __future__ import annotations

import sqlite3

from gateway.store import KEY_REUSED, TOO_MANY_CODES, ApiRequest, NewMessage, code_digest
from gateway.store.sqlite.messages import SCHEMA_VERSION
from tests.aio import with_store


def code_message(mobile: str = "13800138000") -> NewMessage:
    return NewMessage("shop", "cmcc", mobile, "验证码123456", "2", "code")


def render(ids, refused):
    return 200, f'{{"msg_id": "{ids[0]}"}}'


def test_a_key_answers_its_own_request_and_refuses_another(store_setting):
    async def scenario(store):
        first = ApiRequest("shop", (code_message(),), idempotency_key="k", fingerprint="f1",
                           render=render)
        kept = await store.accept_request(first, 1.0)
        again = await store.accept_request(first, 2.0)
        assert (again.replayed, again.response) == (True, kept.response)
        other = await store.accept_request(
            ApiRequest("shop", (code_message(),), idempotency_key="k", fingerprint="f2",
                       render=render), 3.0)
        assert (other.refusal, other.ids, other.response) == (KEY_REUSED, (), None)
        theirs = await store.accept_request(
            ApiRequest("other", (code_message(),), idempotency_key="k", fingerprint="f2",
                       render=render), 4.0)
        assert theirs.refusal is None and theirs.ids and not theirs.replayed
        assert sum((await store.status_counts()).values()) == 2
    with_store(scenario, store_setting)


def test_a_number_gets_at_most_its_code_limits(store_setting):
    def code(mobile="13800138000"):
        return ApiRequest("shop", (code_message(mobile),), code=(code_digest("123456"), 999.0),
                          code_limits=((60, 1), (3600, 2)), render=render)

    async def scenario(store):
        assert (await store.accept_request(code(), 0.0)).refusal is None
        assert (await store.accept_request(code(), 59.0)).refusal == TOO_MANY_CODES
        assert (await store.accept_request(code("13900139000"), 59.0)).refusal is None
        assert (await store.accept_request(code(), 61.0)).refusal is None
        assert (await store.accept_request(code(), 200.0)).refusal == TOO_MANY_CODES  # hour
        assert (await store.accept_request(code(), 3601.0)).refusal is None
    with_store(scenario, store_setting)


def test_a_code_is_spent_after_max_attempts_wrong_ones(store_setting):
    async def scenario(store):
        kept = await store.accept_request(
            ApiRequest("shop", (code_message(),), code=(code_digest("123456"), 100.0),
                       render=render), 0.0)
        message_id = kept.ids[0]
        outcomes = [await store.verify_code("shop", message_id, "000000", 1.0, 3)
                    for _ in range(3)]
        assert outcomes == ["invalid"] * 3
        assert await store.verify_code("shop", message_id, "123456", 1.0, 3) == "spent"
        assert await store.verify_code("other", message_id, "123456", 1.0, 3) == "unknown"
    with_store(scenario, store_setting)


def test_a_signature_keeps_its_type_and_remark(store_setting):
    async def scenario(store):
        sign_id = await store.create_signature("shop", "极光", [], 0, 1.0, 3, "订单通知")
        assert await store.update_signature(sign_id, "极光", [], 0, 2.0)           # kept
        [row] = await store.signatures()
        assert (row["type"], row["remark"]) == (3, "订单通知")
        assert await store.update_signature(sign_id, "极光", [], 0, 3.0, 7, "其他")
        [row] = await store.signatures()
        assert (row["type"], row["remark"]) == (7, "其他")
    with_store(scenario, store_setting)


def test_a_store_of_layout_4_gains_layout_5_and_keeps_its_records(tmp_path):
    path = str(tmp_path / "gw.sqlite")

    async def write(store):
        await store.accept_request(ApiRequest("shop", (code_message(),), idempotency_key="old",
                                              render=render), 1.0)
        await store.create_signature("shop", "极光", [], 1, 1.0)
    with_store(write, path)
    with sqlite3.connect(path) as db:                   # as layout 4 left it
        db.execute("DROP INDEX messages_codes")
        for table, column in (("api_responses", "request"), ("signatures", "type"),
                              ("signatures", "remark")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("PRAGMA user_version=4")

    async def read(store):
        # A key kept before its request was: answered as it was, whatever the request.
        again = await store.accept_request(ApiRequest(
            "shop", (code_message(),), idempotency_key="old", fingerprint="any",
            render=render), 2.0)
        assert again.replayed
        [row] = await store.signatures()
        assert (row["sign"], row["type"], row["remark"]) == ("极光", None, None)
        refused = await store.accept_request(ApiRequest(
            "shop", (code_message(),), code=(code_digest("1"), 9.0), code_limits=((60, 1),),
            render=render), 3.0)
        assert refused.refusal == TOO_MANY_CODES
    with_store(read, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'messages_codes'"
                          ).fetchone()
