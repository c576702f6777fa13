"""The PostgreSQL store's own internals: its schema version, what it refuses, batching into
statements whose number does not grow with the rows, reconnection, and two stores (as two
gateways) on one database, whose matching must hold under READ COMMITTED."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import asyncpg
import pytest

from gateway.bench.postgres import LocalPostgres
from gateway.status import DeliveryStatus, load_tables
from gateway.store import (
    NewMessage,
    PostgresStore,
    Receipt,
    SegmentResult,
    SegmentView,
    StoreError,
    StoreUnavailable,
    create_store,
)
from gateway.store.postgres import messages as messages_sql
from gateway.store.postgres.engine import SIZE
from gateway.store.postgres.schema import SCHEMA_VERSION
from tests.aio import eventually, free_port, run, with_store

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")


def new(i: int = 0, **fields) -> NewMessage:
    return NewMessage(**{"app": "app1", "channel": "cmcc", "recipient": "13800138000",
                         "text": f"hello {i}", **fields})


def submitted(message_id: int, msg_id: int) -> SegmentResult:
    return SegmentResult(message_id, "cmcc", 1, 1, 0, msg_id, connection="cmcc#0", at=10.0)


def receipt(msg_id: int, stat: str = "DELIVRD") -> Receipt:
    return Receipt("cmcc", "cmcc#1", msg_id + 1, msg_id, CODES.classify(stat), received_at=20.0)


async def admin(url: str, statement: str, *args):
    db = await asyncpg.connect(url)
    try:
        return await db.fetch(statement, *args)
    finally:
        await db.close()


async def opened(url: str) -> PostgresStore:
    store = PostgresStore(url)
    await store.open()
    return store


# ----------------------------------------------------------------------------- the schema

def test_a_database_records_its_layout_version_and_a_newer_one_is_refused_untouched(
        postgres_url):
    async def scenario():
        await (await opened(postgres_url)).close()
        assert await admin(postgres_url, "SELECT version FROM store_version") == \
            [(SCHEMA_VERSION,)]
        await admin(postgres_url, "UPDATE store_version SET version = version + 1")
        with pytest.raises(StoreError, match="written by a newer cmpp-gateway"):
            await opened(postgres_url)
        assert await admin(postgres_url, "SELECT version FROM store_version") == \
            [(SCHEMA_VERSION + 1,)]
    run(scenario)


def test_a_database_of_layout_1_gains_what_came_since_and_keeps_its_data(postgres_url):
    """Layout 1 (the first PostgreSQL store) had no messages.callback, users or console
    tables, nor layout 5's api_responses.request, signatures.type and .remark and index
    messages_codes, nor layout 6's messages.priority and 7's messages.msg_id, .result,
    .connection and .sends: opening it adds them, keeps every row, and records the version."""
    async def scenario():
        store = await opened(postgres_url)
        [accepted] = await store.accept([new(1)], now=1.0)
        await store.close()
        for statement in ("DROP TABLE users, user_counts, apps, console_users, "
                          "console_sessions, console_keys, reviews, audit",
                          "ALTER TABLE messages DROP COLUMN callback, DROP COLUMN priority, "
                          "DROP COLUMN msg_id, DROP COLUMN result, DROP COLUMN connection, "
                          "DROP COLUMN sends",
                          "DROP INDEX messages_codes",
                          "ALTER TABLE api_responses DROP COLUMN request",
                          "ALTER TABLE signatures DROP COLUMN type, DROP COLUMN remark",
                          "UPDATE store_version SET version = 1"):
            await admin(postgres_url, statement)
        store = await opened(postgres_url)
        try:
            assert (await store.message(accepted.id)).text == "hello 1"
            [again] = await store.accept([new(2, callback="https://shop.example/s")], now=2.0)
            assert (await store.message(again.id)).callback == "https://shop.example/s"
            assert await store.save_users("shop", [("a", {"default": "1"})], False, 9, 2.0) == \
                [True]
            assert await store.console_key("session", "k") == "k"
            sign_id = await store.create_signature("shop", "极光", [], 0, 1.0, 3, "订单通知")
            assert [(r["id"], r["type"]) for r in await store.signatures()] == [(sign_id, 3)]
            assert await store.query("SELECT COUNT(*) FROM pg_indexes "
                                     "WHERE indexname = 'messages_codes'") == [(1,)]
        finally:
            await store.close()
        assert await admin(postgres_url, "SELECT version FROM store_version") == \
            [(SCHEMA_VERSION,)] == [(7,)]
    run(scenario)


def test_a_database_of_layout_6_gains_layout_7_and_its_old_single_part_segments_still_match(
        postgres_url):
    """Layout 6 kept every SUBMIT outcome in segments. Opening such a database adds the four
    columns of messages and the index messages_msg_id, rewrites no row, and records layout 7:
    a single-part message submitted the old way keeps its segments row, which its report
    still finds and settles (the message's row takes no Msg_Id), while a message submitted
    after the upgrade keeps its outcome on its row."""
    async def scenario():
        store = await opened(postgres_url)
        [old, young] = await store.accept([new(1), new(2)], now=1.0)
        await store.close()
        for statement in (
                "ALTER TABLE messages DROP COLUMN msg_id, DROP COLUMN result, "
                "DROP COLUMN connection, DROP COLUMN sends",         # and messages_msg_id
                "INSERT INTO segments (message_id, part, parts, channel, msg_id, result, "
                "connection, sends, submitted_at, status, temporary) VALUES "
                f"({old.id}, 1, 1, 'cmcc', -2, 0, 'cmcc#0', 1, 10.0, 'submitted', 0)",
                "UPDATE messages SET status = 'submitted', parts = 1, submitted_at = 10.0, "
                f"status_at = 10.0 WHERE id = {old.id}",
                "UPDATE store_version SET version = 6"):
            await admin(postgres_url, statement)
        store = await opened(postgres_url)
        try:
            assert await store.query(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_msg_id'") == \
                [("CREATE INDEX messages_msg_id ON public.messages USING btree (msg_id) "
                  "WHERE (msg_id IS NOT NULL)",)]
            assert store.counts_snapshot() == {"submitted": 1, "accepted": 1}
            old_msg_id = (1 << 64) - 2                              # stored signed: -2
            await store.record_submits([submitted(young.id, 7001)], "default")
            [a, b] = await store.record_receipts([receipt(old_msg_id), receipt(7001)])
            assert (a.message_id, a.message_status, b.message_id, b.message_status) == \
                (old.id, DeliveryStatus.DELIVERED, young.id, DeliveryStatus.DELIVERED)
            assert await store.query("SELECT message_id, msg_id, status, stat FROM segments") \
                == [(old.id, -2, "delivered", "DELIVRD")]
            assert await store.query("SELECT id, msg_id, connection, status FROM messages "
                                     "ORDER BY id") == \
                [(old.id, None, None, "delivered"), (young.id, 7001, "cmcc#0", "delivered")]
            [segment] = (await store.message(old.id)).segments
            assert (segment.msg_id, segment.connection, segment.status) == \
                (old_msg_id, "cmcc#0", "delivered")
        finally:
            await store.close()
        assert await admin(postgres_url, "SELECT version FROM store_version") == [(7,)]
    run(scenario)


def test_a_database_holding_other_tables_named_messages_is_refused(postgres_url):
    async def scenario():
        await admin(postgres_url, "CREATE TABLE messages (anything TEXT)")
        with pytest.raises(StoreError, match="not a cmpp-gateway store"):
            await opened(postgres_url)
        assert await admin(postgres_url, "SELECT to_regclass('segments') IS NULL") == [(True,)]
    run(scenario)


def test_a_user_without_the_right_to_create_tables_is_a_store_error_at_start(postgres_url):
    async def scenario():
        await admin(postgres_url, "DO $$ BEGIN CREATE ROLE gw_limited LOGIN; "
                                  "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        limited = postgres_url.replace("postgresql://postgres@", "postgresql://gw_limited@")
        with pytest.raises(StoreError, match="gw_limited@.*cannot set up the store's tables: "
                                             "permission denied"):
            await opened(limited)
    run(scenario)


def test_gateways_starting_together_create_the_schema_once(postgres_url):
    async def scenario():
        stores = await asyncio.gather(*(opened(postgres_url) for _ in range(4)))
        for store in stores:
            await store.close()
        assert await admin(postgres_url, "SELECT COUNT(*) FROM store_version") == [(1,)]
    run(scenario)


def test_an_unreachable_database_is_unavailable_at_start_and_a_refusal_a_store_error(
        postgres_url):
    """Unreachable: StoreUnavailable (the daemon waits for it); a role the server does not
    know: StoreError (the daemon exits at once)."""
    async def scenario():
        store = PostgresStore(f"postgresql://gw@127.0.0.1:{free_port()}/sms", connect_timeout=5)
        with pytest.raises(StoreUnavailable,
                           match=r"gw@127\.0\.0\.1:\d+/sms: the database cannot be reached"):
            await store.open()
        stranger = PostgresStore(postgres_url.replace("//postgres@", "//stranger@"))
        with pytest.raises(StoreError, match="stranger@.*cannot use the database: role"):
            await stranger.open()
    run(scenario)


def test_a_server_without_synchronous_commit_still_commits_durably(postgres_url):
    async def scenario():
        name = postgres_url.rsplit("/", 1)[1]
        await admin(postgres_url, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        store = await opened(postgres_url)
        try:
            assert await store.query("SHOW synchronous_commit") == [("local",)]
        finally:
            await store.close()
    run(scenario)


# ----------------------------------------------------------------------------- batching

def test_a_batch_costs_the_same_statements_whatever_its_number_of_rows(postgres_url):
    """Group commit without a round trip per message: accepting, recording SUBMIT_RESPs and
    recording reports for 1 or for 400 messages runs the same statements: BEGIN (with the
    Msg_Id locks) and COMMIT, and 1, 1 and 2 statements between (the SUBMIT_RESPs, which
    single-part messages keep on their rows, with the reports waiting for them looked up in
    the same statement)."""
    async def statements_for(store, count: int, first_msg_id: int) -> list[str]:
        seen: list[str] = []

        def logger(record) -> None:      # the Msg_Ids locked are written into BEGIN's text
            if record.query != SIZE:     # the store's size, measured now and then
                seen.append(re.sub(r"'\{[-0-9,]*\}'", "'{...}'", record.query))
        store._state.db.add_query_logger(logger)
        try:
            ids = [a.id for a in await store.accept([new(i) for i in range(count)], now=1.0)]
            await store.record_submits([submitted(i, first_msg_id + i) for i in ids], "default")
            await store.record_receipts([receipt(first_msg_id + i) for i in ids])
            # The writer thread logs a statement after it ran: the last COMMIT may come later.
            await eventually(lambda: seen.count("COMMIT") == 3)
        finally:
            store._state.db.remove_query_logger(logger)
        return seen

    async def scenario(store):
        await statements_for(store, 1, 1000)      # asyncpg learns the types once
        one = await statements_for(store, 1, 2000)
        many = await statements_for(store, 400, 5000)
        assert one == many and len(many) == 10, many      # 3 transactions, 4 statements
        assert store.counts_snapshot() == {"delivered": 402}
    with_store(scenario, postgres_url)


def test_reports_before_their_submit_resps_cost_the_same_statements_whatever_their_number(
        postgres_url):
    """The order two gateways make usual: the reports reach the one that did not send the
    SUBMITs, which stores them before the sender records the SUBMIT_RESPs. Recording 1 or 400
    such SUBMIT_RESPs runs the same statements (it ran 5 a message: each segment settled, each
    message locked, read, written and its callback queued, one by one), and each message ends
    delivered, its report's Stat kept, one callback queued."""
    async def statements_for(store, count: int, first_msg_id: int) -> list[str]:
        ids = [a.id for a in await store.accept([new(i) for i in range(count)], now=1.0)]
        await store.record_receipts([receipt(first_msg_id + i) for i in range(count)])
        seen: list[str] = []

        def logger(record) -> None:
            if record.query != SIZE:
                seen.append(re.sub(r"'\{[-0-9,]*\}'", "'{...}'", record.query))
        store._state.db.add_query_logger(logger)
        try:
            final = await store.record_submits(
                [submitted(i, first_msg_id + n) for n, i in enumerate(ids)], "default")
            await eventually(lambda: "COMMIT" in seen)
        finally:
            store._state.db.remove_query_logger(logger)
        assert final == [DeliveryStatus.DELIVERED] * count
        assert {(await store.message(i)).status_stat for i in ids} == {"DELIVRD"}
        return seen

    async def scenario(store):
        await statements_for(store, 1, 1000)      # asyncpg learns the types once
        one = await statements_for(store, 1, 2000)
        many = await statements_for(store, 400, 5000)
        assert one == many and len(many) <= 8, many
        assert store.counts_snapshot() == {"delivered": 402}
        assert store.unmatched_snapshot() == 0
        assert len(await store.due_callbacks(now=100.0, limit=1000)) == 402
    with_store(scenario, postgres_url)


def test_operations_queued_together_share_one_transaction(postgres_url):
    async def scenario(store):
        before = store.commits
        await asyncio.gather(*(store.accept([new(i)], now=1.0) for i in range(300)))
        assert store.commits - before <= 3
    with_store(scenario, postgres_url)


# ----------------------------------------------------------------------------- layout 7

def test_a_single_part_message_keeps_its_submit_and_its_report_on_its_row(postgres_url):
    """One part, accepted by the ISMG, no report waiting: the Msg_Id (stored signed), Result,
    connection and sends go on the messages row and no segments row is written; its report
    finds it there, settles the row alone, and the view shows the one segment."""
    msg_id = (1 << 63) + 5

    async def scenario(store):
        [a] = await store.accept([new(1)], now=1.0)
        result = submitted(a.id, msg_id)._replace(connection="cmcc#2", sends=2)
        assert await store.record_submits([result], "default") == [None]
        assert await store.query("SELECT msg_id, result, connection, sends, status, parts, "
                                 "submitted_at FROM messages") == \
            [(msg_id - (1 << 64), 0, "cmcc#2", 2, "submitted", 1, 10.0)]
        view = await store.message(a.id)
        assert view.segments == (SegmentView(1, msg_id, 0, "submitted", None, False, "cmcc#2",
                                             10.0, None),)
        [outcome] = await store.record_receipts([receipt(msg_id, "UNDELIV")])
        assert (outcome.matched, outcome.message_id, outcome.latency) == (True, a.id, 10.0)
        view = await store.message(a.id)
        assert (view.status, view.status_stat, view.status_temporary) == \
            ("undeliverable", "UNDELIV", False)
        assert view.segments == (SegmentView(1, msg_id, 0, "undeliverable", "UNDELIV", False,
                                             "cmcc#2", 10.0, 20.0),)
        assert await store.query("SELECT COUNT(*) FROM segments") == [(0,)]
        assert await store.query("SELECT message_id, part FROM receipts") == [(a.id, 1)]
        [again] = await store.record_receipts([receipt(msg_id, "DELIVRD")])
        assert again.matched and (await store.message(a.id)).status == "undeliverable"
        assert store.counts_snapshot() == {"undeliverable": 1}
    with_store(scenario, postgres_url)


def test_single_part_outcomes_the_row_does_not_take_are_segments_rows(postgres_url):
    """An outcome on another channel than its message's, one whose message is no longer
    accepted (answered again: the later answer wins, and the row's outcome is cleared, so
    that the part is in one place), and one a report waits for are segments rows, as before
    layout 7, in a batch with one kept on its row; each message's report finds its
    segment."""
    async def scenario(store):
        ids = [a.id for a in await store.accept([new(i) for i in range(4)], now=1.0)]
        await store.record_submits([submitted(ids[1], 100)], "default")
        await store.record_receipts([receipt(300)])                 # waits for its SUBMIT
        results = [submitted(ids[0], 400), submitted(ids[1], 101),
                   submitted(ids[2], 300), submitted(ids[3], 500)._replace(channel="other")]
        final = await store.record_submits(results, "default")
        assert final == [None, None, DeliveryStatus.DELIVERED, None]
        assert await store.query("SELECT message_id, msg_id, channel, status FROM segments "
                                 "ORDER BY message_id") == \
            [(ids[1], 101, "cmcc", "submitted"), (ids[2], 300, "cmcc", "delivered"),
             (ids[3], 500, "other", "submitted")]
        assert await store.query("SELECT id, msg_id, connection FROM messages ORDER BY id") \
            == [(ids[0], 400, "cmcc#0"), (ids[1], None, None), (ids[2], None, None),
                (ids[3], None, None)]
        assert [s.msg_id for s in (await store.message(ids[1])).segments] == [101]
        other = Receipt("other", "other#0", 501, 500, CODES.classify("DELIVRD"), received_at=20.0)
        outcomes = await store.record_receipts([receipt(400), receipt(100), receipt(101), other])
        assert [o.message_id for o in outcomes] == [ids[0], None, ids[1], ids[3]]
        assert store.counts_snapshot() == {"delivered": 4}
    with_store(scenario, postgres_url)


# ----------------------------------------------------------------------------- connection

_MESSAGES = ("INSERT INTO messages (app, channel, recipient, text, kind, reference, created_at, "
             "status) SELECT 'app1', 'cmcc', '13800138000', 't', 'notification', 0, 0, $1 "
             "FROM generate_series(1, $2)")


def _index_scans_under_the_update(node: dict, under: bool = False) -> list[str]:
    """The indexes a JSON plan reads below its UPDATE of messages."""
    under = under or (node.get("Node Type") == "ModifyTable"
                      and node.get("Relation Name") == "messages")
    found = [node["Index Name"]] if under and "Index Name" in node else []
    for child in node.get("Plans", []):
        found += _index_scans_under_the_update(child, under)
    return found


def test_submit_outcomes_find_their_messages_by_key_when_the_statistics_say_none_is_pending(
        postgres_url):
    """Autovacuum may analyze the messages while none is pending (an idle gateway). When a
    backlog then fills the partial index messages_pending, the statement that records SUBMIT
    outcomes must still reach each message by its primary key: read through that index, which
    the statistics call empty, it scanned the whole backlog for each outcome (0.8 s a
    statement with 300,000 pending). Read from the statement's plan, with its parameters."""
    async def scenario():
        store = await opened(postgres_url)
        await store.close()
        await admin(postgres_url, _MESSAGES, "delivered", 20_000)
        await admin(postgres_url, "VACUUM ANALYZE messages")
        await admin(postgres_url, _MESSAGES, "accepted", 20_000)
        ids = [r[0] for r in await admin(postgres_url, "SELECT id FROM messages WHERE "
                                         "status = 'accepted' ORDER BY id DESC LIMIT 10")]
        outcomes = [submitted(message_id, 5000 + i) for i, message_id in enumerate(ids)]
        [(plan,)] = await admin(
            postgres_url, "EXPLAIN (FORMAT JSON) " + messages_sql._RECORD_SUBMITS,
            *messages_sql._segment_columns(outcomes), ["cmcc"] * len(ids),
            [r.msg_id for r in outcomes])
        indexes = _index_scans_under_the_update(json.loads(plan)[0]["Plan"])
        assert indexes == ["messages_pkey"], indexes
    run(scenario)


def test_a_connection_the_server_ended_is_made_again_for_the_next_operation(postgres_url):
    async def scenario(store):
        [first] = await store.accept([new(1)], now=1.0)
        await admin(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE application_name = 'cmpp-gateway'")
        for _ in range(100):     # until the writer has seen it (or the query failed)
            try:
                [again] = await store.accept([new(2)], now=1.0)
                break
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        assert again.id > first.id and await store.status_counts() == {"accepted": 2}
        assert await store.query("SELECT COUNT(*) FROM messages") == [(2,)]
    with_store(scenario, postgres_url)


def test_a_database_that_is_down_fails_operations_as_unavailable_until_it_is_back(
        require_postgres):
    """A server of its own, stopped and started again under an open store: meanwhile each
    operation fails with StoreUnavailable (nothing stored, nothing hanging) and the store says
    why, never with its password; after, the store finds out by itself that it can write
    again, and goes on with what was committed before."""
    server = LocalPostgres().start()
    password = "pw-9a4e-not-to-be-shown"          # the server trusts: any password goes

    async def scenario():
        store = PostgresStore(server.url(), password=password, probe_interval=0.05)
        await store.open()
        try:
            await store.accept([new(1)], now=1.0)
            await asyncio.to_thread(server.stop)
            with pytest.raises(StoreUnavailable, match="cannot be reached") as refused:
                await store.accept([new(2)], now=1.0)
            writable, reason = store.writable_snapshot()
            assert not writable and reason.startswith(f"the store {store.name} cannot be reached")
            assert password not in reason + str(refused.value)
            await asyncio.to_thread(server.start)
            await eventually(lambda: store.writable_snapshot()[0], timeout=20)
            await store.accept([new(3)], now=1.0)
            assert await store.query("SELECT text FROM messages ORDER BY id") == \
                [("hello 1",), ("hello 3",)]
        finally:
            await store.close()
    try:
        run(scenario, timeout=60)
    finally:
        server.remove()


# ----------------------------------------------------------------------------- two gateways

def test_reports_and_submit_resps_recorded_at_once_by_two_gateways_all_match(postgres_url):
    """Gateway B stores a report while gateway A records the SUBMIT_RESP it names, in two
    transactions at once, many times over: however they interleave, each report ends matched
    (the per-Msg_Id lock makes the second see the first's commit; without it, both miss the
    other's uncommitted row now and then)."""
    count = 300

    async def scenario():
        a, b = await opened(postgres_url), await opened(postgres_url)
        try:
            ids = [x.id for x in await a.accept([new(i) for i in range(count)], now=1.0)]
            for i in ids:                       # each pair in two transactions at once
                await asyncio.gather(a.record_submits([submitted(i, 70_000 + i)], "default"),
                                     b.record_receipts([receipt(70_000 + i)]))
            await asyncio.gather(a.query("SELECT 1"), b.query("SELECT 1"))   # all committed
            assert await a.query("SELECT COUNT(*) FROM receipts WHERE message_id IS NULL") == \
                [(0,)]
            assert await a.query("SELECT status, COUNT(*) FROM messages GROUP BY status") == \
                [(DeliveryStatus.DELIVERED.value, count)]
        finally:
            await a.close()
            await b.close()
    run(scenario, timeout=60)


def test_an_idempotency_key_sent_to_two_gateways_at_once_stores_one_message(postgres_url):
    async def scenario():
        a, b = await opened(postgres_url), await opened(postgres_url)
        try:
            answers = await asyncio.gather(*(store.accept([new(i, idempotency_key=f"k{i}")],
                                                          now=1.0)
                                             for i in range(50) for store in (a, b)))
            for first, second in zip(answers[::2], answers[1::2]):
                assert first[0].id == second[0].id
                assert sorted([first[0].existing, second[0].existing]) == [False, True]
            assert await a.query("SELECT COUNT(*) FROM messages") == [(50,)]
        finally:
            await a.close()
            await b.close()
    run(scenario, timeout=60)


def test_both_stores_have_the_same_tables_columns_and_keys(tmp_path, postgres_url):
    """The two stores hold the same records (copy-store copies them column for column): a
    table or column added to one store and not the other fails here."""
    async def layout_of(setting: str):
        store = create_store(setting)
        await store.open()
        try:
            return await store.layout()
        finally:
            await store.close()

    async def scenario():
        sqlite = await layout_of(str(tmp_path / "gw.sqlite"))
        assert await layout_of(postgres_url) == sqlite
        assert sqlite["messages"][1] == ("id",) and sqlite["segments"][1] == ("message_id", "part")
    run(scenario)
