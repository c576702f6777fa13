"""The store's ceiling: unmatched reports expire, finished messages and MO go after the
retention time with everything hanging off them, idempotency keys after their window; never
anything that is not final, and always in small batches found through indexes. Each test runs
on both backends (tests.conftest's store_setting)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from gateway.status import DeliveryStatus, load_tables
from gateway.store import (
    ApiRequest,
    MoMessage,
    MoPart,
    NewMessage,
    Receipt,
    SegmentResult,
    SqliteStore,
    code_digest,
)
from gateway.store.postgres.engine import SIZE
from tests.aio import with_store

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")


def receipt(msg_id: int, at: float, stat: str = "DELIVRD") -> Receipt:
    return Receipt("cmcc", "cmcc#0", msg_id + 1_000_000, msg_id, CODES.classify(stat),
                   received_at=at)


def new(i: int, **fields) -> NewMessage:
    return NewMessage(**{"app": "app1", "channel": "cmcc", "recipient": "13800138000",
                         "text": f"hello {i}", **fields})


def submitted(message_id: int, msg_id: int, at: float, part: int = 1,
              parts: int = 1) -> SegmentResult:
    return SegmentResult(message_id, "cmcc", part, parts, 0, msg_id, connection="cmcc#0", at=at)


async def rows(store, table: str) -> int:
    return (await store.query(f"SELECT COUNT(*) FROM {table}"))[0][0]


async def whole_pass(step, before: float, limit: int = 1000) -> tuple[dict, int]:
    """Run a pass to its end: (rows by table, batches it took)."""
    total, after, batches = {}, 0, 0
    while after is not None:
        pruned = await step(before, after, limit)
        for table, count in pruned.rows.items():
            total[table] = total.get(table, 0) + count
        after, batches = pruned.after, batches + 1
    return total, batches


# ----------------------------------------------------------------------------- unmatched

def test_unmatched_reports_expire_oldest_first_and_the_count_follows(store_setting):
    async def scenario(store):
        await store.record_receipts([receipt(100 + i, at=float(i)) for i in range(5)])
        [a] = await store.accept([new(1)], now=1.0)
        await store.record_submits([submitted(a.id, 50, at=1.0)], "default")
        await store.record_receipts([receipt(50, at=2.0)])            # matched: not expired
        first = await store.expire_unmatched_receipts(before=3.0, after=0, limit=2)
        assert first.rows == {"receipts": 2} and first.after is not None
        second = await store.expire_unmatched_receipts(before=3.0, after=first.after, limit=2)
        assert second.rows == {"receipts": 1} and second.after is None
        assert store.unmatched_snapshot() == 2 and await store.unmatched_receipts() == 2
        assert await store.query("SELECT msg_id FROM receipts ORDER BY msg_id") == \
            [(50,), (103,), (104,)]
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- messages

async def finished_message(store, i: int, at: float, code: bool = False, parts: int = 1) -> int:
    """A message delivered at ``at`` (two reports a part, a code, a status callback done). Of
    one part, its SUBMIT outcome is on its row; of several, each part's is a segments row."""
    [a] = await store.accept([new(i)], now=at)
    if code:
        await store.query("INSERT INTO codes (message_id, app, digest, expires_at) "
                          "VALUES (?, 'app1', ?, ?)", (a.id, code_digest("123456"), at + 300))
    msg_ids = [500 + i + 1000 * part for part in range(parts)]
    await store.record_submits([submitted(a.id, m, at=at, part=part, parts=parts)
                                for part, m in enumerate(msg_ids, start=1)], "default")
    await store.record_receipts([r for m in msg_ids
                                 for r in (receipt(m, at, "ACCEPTD"), receipt(m, at))])
    for entry in await store.due_callbacks(now=at, limit=100):
        await store.callback_done(entry.id, True, at, None, None)
    return a.id


def test_finished_messages_go_with_everything_hanging_off_them(store_setting):
    async def scenario(store):
        # Two messages of one part (no segments rows), one of two parts; a young one of two.
        old = [await finished_message(store, i, at=10.0, code=True, parts=1 + i // 2)
               for i in range(3)]
        young = await finished_message(store, 9, at=500.0, parts=2)
        pruned, _ = await whole_pass(store.prune_messages, before=100.0)
        assert pruned == {"messages": 3, "segments": 2, "receipts": 8, "codes": 3, "outbox": 3}
        assert await store.query("SELECT id FROM messages") == [(young,)]
        assert [await rows(store, t) for t in ("segments", "receipts", "outbox", "codes")] == \
            [2, 4, 1, 0]
        assert [await store.message(i) for i in old] == [None] * 3
        assert await store.status_counts() == {"delivered": 1}
    with_store(scenario, store_setting)


def test_nothing_that_is_not_final_is_removed_whatever_its_age(store_setting):
    async def scenario(store):
        waiting, sent, long = [a.id for a in await store.accept([new(1), new(2), new(3)], now=1.0)]
        await store.record_submits([submitted(sent, 71, at=2.0)], "default")
        await store.record_submits([submitted(long, 72, at=2.0, parts=2)], "default")
        await store.record_receipts([receipt(71, 3.0, "ACCEPTD"), receipt(72, 3.0)])
        done = await finished_message(store, 4, at=4.0)
        pruned, _ = await whole_pass(store.prune_messages, before=1e9)
        assert pruned["messages"] == 1 and await store.message(done) is None
        assert [(await store.message(i)).status for i in (waiting, sent, long)] == \
            ["accepted", "submitted", "accepted"]
        assert await rows(store, "receipts") == 2
        # The SUBMITs recorded stay: the sent message's on its row, the long one's first part
        # in its segments row (the only one left).
        assert [[s.msg_id for s in (await store.message(i)).segments] for i in (sent, long)] == \
            [[71], [72]]
        assert await rows(store, "segments") == 1
    with_store(scenario, store_setting)


def test_a_final_message_stays_while_its_status_callback_is_pending(store_setting):
    async def scenario(store):
        [a] = await store.accept([new(1)], now=1.0)
        await store.record_submits([SegmentResult(a.id, "cmcc", 1, 1, 9, at=2.0,
                                                  status=DeliveryStatus.REJECTED)], "default")
        await whole_pass(store.prune_messages, before=1e9)
        assert (await store.message(a.id)).status == "rejected"
        [entry] = await store.due_callbacks(now=3.0, limit=10)
        await store.callback_done(entry.id, False, 3.0, None, "HTTP 500")    # given up
        pruned, _ = await whole_pass(store.prune_messages, before=1e9)
        assert pruned["messages"] == 1 and pruned["outbox"] == 1
    with_store(scenario, store_setting)


def test_a_pass_goes_in_batches_and_ends_at_the_first_young_message(store_setting):
    async def scenario(store):
        for i in range(5):
            await finished_message(store, i, at=10.0)
        await finished_message(store, 5, at=500.0)
        await finished_message(store, 6, at=20.0)         # the clock went back: next time
        batch = await store.prune_messages(before=100.0, after=0, limit=2)
        assert batch.rows["messages"] == 2 and batch.after == 2
        pruned, batches = await whole_pass(store.prune_messages, before=100.0, limit=2)
        assert pruned["messages"] == 3 and batches == 2
        assert await rows(store, "messages") == 2
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- MO

def mo_part(i: int, at: float) -> MoPart:
    return MoPart("cmcc", "cmcc#0", 900 + i, "13800138000", "10690001", "", 0, 0,
                  f"hi {i}".encode(), at)


async def mo(store, i: int, at: float, apps=("app1",)) -> int:
    [part] = await store.record_mo_parts([mo_part(i, at)])
    return await store.record_mo_message(
        MoMessage("cmcc", "13800138000", "10690001", f"hi {i}", f"hi {i}".encode(), 0,
                  (part.id,), True, at), apps)


def test_mo_goes_with_its_parts_once_its_callbacks_are_done(store_setting):
    async def scenario(store):
        sent = await mo(store, 1, at=10.0)
        waiting = await mo(store, 2, at=10.0)
        await mo(store, 3, at=10.0, apps=())             # no app wants it
        [loose] = await store.record_mo_parts([mo_part(4, at=10.0)])
        for entry in await store.due_callbacks(now=11.0, limit=10):
            if entry.ref == sent:
                await store.callback_done(entry.id, True, 11.0, None, None)
        pruned, _ = await whole_pass(store.prune_mo, before=100.0)
        assert pruned == {"mo": 2, "mo_parts": 2, "outbox": 1}
        assert await store.query("SELECT id FROM mo") == [(waiting,)]
        assert [p.id for p in await store.unassembled_mo_parts()] == [loose.id]
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- idempotency

def test_idempotency_keys_are_forgotten_after_their_window(store_setting):
    async def scenario(store):
        answer = lambda ids, refused: (200, json.dumps({"msg_id": ids[0]}))  # noqa: E731
        first = await store.accept_request(
            ApiRequest("app1", (new(1),), idempotency_key="k1", render=answer), now=10.0)
        [keyed] = await store.accept([new(2, idempotency_key="k2")], now=10.0)
        await store.accept_request(
            ApiRequest("app1", (new(3),), idempotency_key="k3", render=answer), now=500.0)
        again = await store.accept_request(ApiRequest("app1", idempotency_key="k1"), now=20.0)
        assert again.replayed and again.response == first.response
        pruned, _ = await whole_pass(store.forget_idempotency_keys, before=100.0)
        assert pruned == {"api_responses": 1, "messages.idempotency_key": 1}
        later = await store.accept_request(
            ApiRequest("app1", (new(1),), idempotency_key="k1", render=answer), now=600.0)
        assert not later.replayed and later.ids != first.ids
        [fresh] = await store.accept([new(2, idempotency_key="k2")], now=600.0)
        assert not fresh.existing and fresh.id != keyed.id
        assert await rows(store, "api_responses") == 2
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- the work

class Recording:
    """Stands in for the SQLite store's connection and records each statement run (for their
    query plans)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.statements = db, []

    def execute(self, statement: str, parameters=()):
        self.statements.append((statement, parameters))
        return self.db.execute(statement, parameters)

    def __getattr__(self, name):
        return getattr(self.db, name)


async def statements_run(store, work) -> dict[str, tuple]:
    """The statements ``work()`` makes the store run (each once, with its last parameters),
    BEGIN and COMMIT left out: SQLite's through Recording, PostgreSQL's through asyncpg's
    query logger."""
    state = store._state
    if isinstance(store, SqliteStore):
        recording = state.db = Recording(state.db)
        try:
            await work()
        finally:
            state.db = recording.db
        seen = recording.statements
    else:
        seen = []

        def logger(record) -> None:
            seen.append((record.query, record.args))
        state.db.add_query_logger(logger)
        try:
            await work()
            await store.query("SELECT 1")        # the writer has logged every statement
        finally:
            state.db.remove_query_logger(logger)
    return {statement: parameters for statement, parameters in seen
            if not statement.startswith(("BEGIN", "COMMIT", "SELECT 1", SIZE))}


async def table_scans(store, statement: str, parameters: tuple) -> list[str]:
    """The steps of ``statement``'s plan that read a whole table."""
    if isinstance(store, SqliteStore):
        plan = [row[-1] for row in await store.query(f"EXPLAIN QUERY PLAN {statement}",
                                                    parameters)]
        return [step for step in plan if step.startswith("SCAN") and not any(
            bounded in step for bounded in ("json_each", "CONSTANT ROW", "(subquery"))]
    [(plan,)] = await store.query(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
    return [f"Seq Scan on {node['Relation Name']}" for node in plan_nodes(json.loads(plan)[0])
            if node["Node Type"] == "Seq Scan"]


def plan_nodes(node: dict):
    """A PostgreSQL plan's nodes, from its JSON form (and those of its init plans)."""
    if "Plan" in node:
        yield from plan_nodes(node["Plan"])
        return
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)


def test_every_retention_statement_goes_through_an_index_never_a_table_scan(store_setting):
    """A batch costs its own size, never the table's: no statement of a pass scans a table."""
    async def scenario(store):
        for i in range(3):
            await finished_message(store, i, at=10.0, code=True)
        await mo(store, 1, at=10.0)
        for entry in await store.due_callbacks(now=11.0, limit=10):
            await store.callback_done(entry.id, True, 11.0, None, None)
        await store.record_receipts([receipt(100, at=1.0)])
        await store.accept([new(9, idempotency_key="k")], now=1.0)
        await store.accept_request(ApiRequest("app1", (new(8),), idempotency_key="k",
                                              render=lambda ids, refused: (200, "{}")), now=1.0)

        async def passes():
            for step in (store.expire_unmatched_receipts, store.prune_messages, store.prune_mo,
                         store.forget_idempotency_keys):
                await whole_pass(step, before=100.0)
        statements = await statements_run(store, passes)
        scans = {s: await table_scans(store, s, parameters)
                 for s, parameters in statements.items()}
        # every statement of the four passes: SQLite's 13, PostgreSQL's 6 (a batch of
        # messages or MO is read, then deleted with all that hangs off it in one statement)
        assert len(statements) == (13 if isinstance(store, SqliteStore) else 6), \
            list(statements)
        assert {s: steps for s, steps in scans.items() if steps} == {}
    with_store(scenario, store_setting)
