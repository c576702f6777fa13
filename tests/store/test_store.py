"""The store, each test on both backends (SQLite and PostgreSQL, tests.conftests
store_setting): durability, group commit, matching, and the status it derives. The tests at
the end look inside the SQLite file; tests/store/test_postgres.py does so for PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.status import DeliveryStatus, load_tables
from gateway.store import (
    PRIORITIES,
    MoMessage,
    MoPart,
    NewMessage,
    Receipt,
    SegmentResult,
    SqliteStore,
    create_store,
)
from tests.aio import run, with_store

TABLES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers")
CODES = TABLES.for_provider("default")
FROM_START = dict.fromkeys(PRIORITIES, 0)


def receipt(msg_id: int, stat: str = "DELIVRD", deliver_msg_id: int | None = None,
            at: float = 20.0, channel: str = "cmcc") -> Receipt:
    return Receipt(channel, "cmcc#0", deliver_msg_id if deliver_msg_id is not None else msg_id + 1,
                   msg_id, CODES.classify(stat), received_at=at)


def submitted(message_id: int, msg_id: int, part: int = 1, parts: int = 1, at: float = 10.0,
              channel: str = "cmcc") -> SegmentResult:
    return SegmentResult(message_id, channel, part, parts, 0, msg_id, connection="cmcc#0", at=at)


def new(i: int = 0, **fields) -> NewMessage:
    values = dict(app="app1", channel="cmcc", recipient="13800138000", text=f"hello {i}")
    values.update(fields)
    return NewMessage(**values)


# ----------------------------------------------------------------------------- accepting

def test_accepted_messages_get_ids_and_wait_to_be_submitted(store_setting):
    async def scenario(store):
        accepted = await store.accept([new(1), new(2), new(3)], now=1.0)
        assert [a.id for a in accepted] == [1, 2, 3] and not any(a.existing for a in accepted)
        pending = await store.fetch_pending("cmcc", FROM_START, 10, now=1.0)
        assert [(p.id, p.text, p.done_parts) for p in pending] == \
            [(1, "hello 1", frozenset()), (2, "hello 2", frozenset()), (3, "hello 3", frozenset())]
        assert await store.fetch_pending("cmcc", dict.fromkeys(PRIORITIES, 2), 10, now=1.0) \
            == [pending[2]]
        assert await store.fetch_pending("other", FROM_START, 10, now=1.0) == []
        assert await store.status_counts() == {"accepted": 3}
    with_store(scenario, store_setting)


def test_an_idempotency_key_seen_before_returns_the_first_message(store_setting):
    async def scenario(store):
        first = await store.accept([new(1, idempotency_key="k1")], now=1.0)
        again = await store.accept([new(2, idempotency_key="k1"), new(3)], now=2.0)
        other_app = await store.accept([new(4, idempotency_key="k1", app="app2")], now=3.0)
        assert again[0].id == first[0].id and again[0].existing and not again[1].existing
        assert not other_app[0].existing
        assert (await store.message(first[0].id)).text == "hello 1"
        assert await store.status_counts() == {"accepted": 3}
    with_store(scenario, store_setting)


def test_what_was_committed_survives_closing_and_reopening(store_setting):

    async def write(store):
        ids = [a.id for a in await store.accept([new(1), new(2)], now=1.0)]
        await store.record_submits([submitted(ids[0], 500)], "default")
        await store.record_receipts([receipt(999)])          # matches nothing yet
    with_store(write, store_setting)

    async def read(store):
        assert [p.id for p in await store.fetch_pending("cmcc", FROM_START, 10, now=5.0)] == [2]
        assert (await store.message(1)).status == "submitted"
        assert await store.status_counts() == {"accepted": 1, "submitted": 1}
        assert await store.unmatched_receipts() == 1
    with_store(read, store_setting)


def test_closing_commits_what_was_queued_and_refuses_what_comes_after(store_setting):

    async def queue_then_close():
        store = create_store(store_setting)
        await store.open()
        queued = [store.accept([new(i)], now=1.0) for i in range(200)]   # none awaited
        await store.close()
        assert all(f.done() and f.result()[0].id for f in queued)
        with pytest.raises(RuntimeError, match="not open"):
            store.accept([new()], now=1.0)
    run(queue_then_close)

    async def read(store):
        assert await store.status_counts() == {"accepted": 200}
    with_store(read, store_setting)


def test_a_deferred_message_waits_until_it_is_due(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.defer(a.id, until=50.0)
        assert await store.fetch_pending("cmcc", FROM_START, 10, now=49.0) == []
        [again] = await store.fetch_pending("cmcc", FROM_START, 10, now=50.0)
        assert again.attempts == 1
    with_store(scenario, store_setting)


def test_concurrent_writes_share_commits(store_setting):
    async def scenario(store):
        before = store.commits
        results = await asyncio.gather(*(store.accept([new(i)], now=1.0) for i in range(500)))
        assert sorted(r[0].id for r in results) == list(range(1, 501))
        assert store.commits - before < 50
    with_store(scenario, store_setting)


def test_one_failing_operation_fails_alone(store_setting):
    async def scenario(store):
        good = asyncio.ensure_future(store.accept([new(1)], now=1.0))
        bad = asyncio.ensure_future(store.accept([new(2, recipient=None)], now=1.0))
        also_good = asyncio.ensure_future(store.accept([new(3)], now=1.0))
        await asyncio.wait([good, bad, also_good])
        assert good.result()[0].id and also_good.result()[0].id
        with pytest.raises(Exception, match="(?i)not.null"):
            bad.result()
        assert await store.status_counts() == {"accepted": 2}
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- receipts

def test_a_report_settles_its_message_and_queues_one_callback(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        assert await store.record_submits([submitted(a.id, 1 << 63 | 5)], "default") == [None]
        [outcome] = await store.record_receipts([receipt(1 << 63 | 5, at=12.5)])
        assert outcome.matched and outcome.message_status is DeliveryStatus.DELIVERED
        assert outcome.latency == 2.5
        view = await store.message(a.id)
        assert (view.status, view.status_stat, view.status_temporary, view.status_provider) == \
            ("delivered", "DELIVRD", False, "default")
        assert view.segments[0].msg_id == 1 << 63 | 5     # unsigned 64-bit kept exact
        [callback] = await store.due_callbacks(now=100.0, limit=10)
        assert (callback.app, callback.kind, callback.ref) == ("app1", "status", a.id)
        assert await store.status_counts() == {"delivered": 1}
    with_store(scenario, store_setting)


def test_a_duplicate_deliver_changes_nothing(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 5)], "default")
        first, second = await store.record_receipts([receipt(5, "UNDELIV"), receipt(5, "UNDELIV")])
        assert first.message_status is DeliveryStatus.UNDELIVERABLE and second.duplicate
        [later] = await store.record_receipts([receipt(5, "DELIVRD", deliver_msg_id=77)])
        assert later.matched and later.message_status is None      # the first final report won
        assert (await store.message(a.id)).status == "undeliverable"
        assert len(await store.due_callbacks(now=100.0, limit=10)) == 1
    with_store(scenario, store_setting)


def test_a_report_before_its_submit_resp_is_held_then_matched(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        [early] = await store.record_receipts([receipt(42, "MK:0012")])
        assert not early.matched and await store.unmatched_receipts() == 1
        final = await store.record_submits([submitted(a.id, 42)], "default")
        assert final == [DeliveryStatus.UNDELIVERABLE]
        view = await store.message(a.id)
        assert (view.status, view.status_stat) == ("undeliverable", "MK:0012")
        assert await store.unmatched_receipts() == 0
    with_store(scenario, store_setting)


def test_a_report_for_an_unknown_msg_id_is_kept_and_counted(store_setting):
    async def scenario(store):
        await store.record_receipts([receipt(31337), receipt(31338, channel="other")])
        assert await store.unmatched_receipts() == 2
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 31338)], "default")   # other channel's id
        assert (await store.message(a.id)).status == "submitted"
        assert await store.unmatched_receipts() == 2
    with_store(scenario, store_setting)


def test_an_intermediate_state_does_not_end_a_message(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 9)], "default")
        [outcome] = await store.record_receipts([receipt(9, "ACCEPTD")])
        assert outcome.matched and outcome.message_status is None
        assert (await store.message(a.id)).status == "submitted"
    with_store(scenario, store_setting)


def test_a_long_message_is_delivered_only_when_every_part_is(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 100 + p, p, 3) for p in (1, 2)], "default")
        assert (await store.message(a.id)).status == "accepted"       # part 3 not sent yet
        await store.record_submits([submitted(a.id, 103, 3, 3)], "default")
        assert (await store.message(a.id)).status == "submitted"
        for msg_id in (101, 103):
            [o] = await store.record_receipts([receipt(msg_id)])
            assert o.message_status is None
        [o] = await store.record_receipts([receipt(102)])
        assert o.message_status is DeliveryStatus.DELIVERED
        assert [s.status for s in (await store.message(a.id)).segments] == ["delivered"] * 3
    with_store(scenario, store_setting)


def test_a_long_message_ends_at_its_first_final_failure_and_keeps_per_part_detail(store_setting):
    """Final as soon as one part fails (its callback is sent then), so a later failure of
    another part changes the part's detail, never the message's status."""
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 200 + p, p, 3) for p in (1, 2, 3)], "default")
        outcomes = await store.record_receipts(
            [receipt(201), receipt(203, "MI:0024"), receipt(202, "MK:0012")])
        assert [o.message_status for o in outcomes] == [None, DeliveryStatus.EXPIRED, None]
        view = await store.message(a.id)
        assert (view.status, view.status_stat) == ("expired", "MI:0024")
        assert [(s.status, s.stat) for s in view.segments] == \
            [("delivered", "DELIVRD"), ("undeliverable", "MK:0012"), ("expired", "MI:0024")]
    with_store(scenario, store_setting)


def test_a_rejected_submit_is_final_at_once(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        final = await store.record_submits([SegmentResult(
            a.id, "cmcc", 1, 1, 13, status=DeliveryStatus.REJECTED, at=3.0, stat="Result 13")],
            "default")
        assert final == [DeliveryStatus.REJECTED]
        assert (await store.message(a.id)).status == "rejected"
    with_store(scenario, store_setting)


def test_no_report_within_the_timeout_ends_unknown(store_setting):
    async def scenario(store):
        ids = [a.id for a in await store.accept([new(1), new(2)], now=1.0)]
        await store.record_submits([submitted(ids[0], 1, at=10.0), submitted(ids[1], 2, at=50.0)],
                                   "default")
        assert await store.expire_reports(now=100.0, timeout=60.0) == [ids[0]]
        assert (await store.message(ids[0])).status == "unknown"
        assert (await store.message(ids[1])).status == "submitted"
        assert await store.status_counts() == {"unknown": 1, "submitted": 1}
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- MO and callbacks

def mo_part(i: int, content: bytes = b"TD") -> MoPart:
    return MoPart("cmcc", "cmcc#0", 900 + i, "13800138000", "10690001", "", 0, 0, content, 5.0)


def test_mo_parts_are_kept_once_and_joined_into_messages(store_setting):
    async def scenario(store):
        first, again, other = await store.record_mo_parts([mo_part(1), mo_part(1), mo_part(2, b"hi")])
        assert first.id and again is None and other.id
        assert [p.id for p in await store.unassembled_mo_parts()] == [first.id, other.id]
        mo_id = await store.record_mo_message(
            MoMessage("cmcc", "13800138000", "10690001", "TD", b"TD", 0, (first.id,), True, 5.0),
            apps=("app1", "app2"))
        assert [p.id for p in await store.unassembled_mo_parts()] == [other.id]
        callbacks = await store.due_callbacks(now=10.0, limit=10)
        assert [(c.app, c.kind, c.ref) for c in callbacks] == [("app1", "mo", mo_id), ("app2", "mo", mo_id)]
    with_store(scenario, store_setting)


def test_a_callback_is_retried_until_done(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([SegmentResult(a.id, "cmcc", 1, 1, 9,
                                                  status=DeliveryStatus.REJECTED, at=2.0)], "default")
        [entry] = await store.due_callbacks(now=2.0, limit=10)
        await store.callback_done(entry.id, False, now=2.0, next_attempt_at=30.0, error="HTTP 500")
        assert await store.due_callbacks(now=29.0, limit=10) == []
        [again] = await store.due_callbacks(now=30.0, limit=10)
        assert again.attempts == 1 and again.event_id == entry.event_id
        await store.callback_done(entry.id, True, now=30.0, next_attempt_at=None, error=None)
        assert await store.due_callbacks(now=1e9, limit=10) == []
        assert await store.pending_callbacks() == 0
    with_store(scenario, store_setting)


def test_final_statuses_queue_callbacks_only_for_apps_that_have_a_status_url(store_setting):
    async def scenario(store):
        store.queue_status_callbacks_for(["app1"])
        ids = [a.id for a in await store.accept([new(0), new(1, app="quiet"), new(2, app="quiet"),
                                                 new(3)], now=1.0)]
        await store.record_submits([SegmentResult(ids[0], "cmcc", 1, 1, 9, at=2.0,
                                                  status=DeliveryStatus.REJECTED),
                                    SegmentResult(ids[1], "cmcc", 1, 1, 9, at=2.0,
                                                  status=DeliveryStatus.REJECTED)], "default")
        await store.record_submits([submitted(ids[2], 700), submitted(ids[3], 701)], "default")
        await store.record_receipts([receipt(700), receipt(701)])
        due = await store.due_callbacks(now=30.0, limit=10)
        assert sorted((e.app, e.ref) for e in due) == [("app1", ids[0]), ("app1", ids[3])]
    with_store(scenario, store_setting)


def test_a_message_with_its_own_callback_url_queues_its_status_whatever_its_app_has(
        store_setting):
    async def scenario(store):
        store.queue_status_callbacks_for([])                 # no app has a status URL
        url = "https://shop.example/sms/status?order=7"
        ids = [a.id for a in await store.accept(
            [new(i, callback=url if i % 2 else None) for i in range(8)], now=1.0)]
        # Settled four ways: one-part report, SUBMIT_RESP refusal, long message, report timeout.
        await store.record_submits([submitted(ids[0], 800), submitted(ids[1], 801)], "default")
        await store.record_receipts([receipt(800, "MK:0012"), receipt(801, "MK:0012")])
        await store.record_submits([SegmentResult(i, "cmcc", 1, 1, 9, at=2.0,
                                                  status=DeliveryStatus.REJECTED)
                                    for i in ids[2:4]], "default")
        await store.record_submits([submitted(i, 899 + 2 * n + p, part=p, parts=2)
                                    for n, i in enumerate(ids[4:6]) for p in (1, 2)], "default")
        await store.record_receipts([receipt(900 + k, at=21.0) for k in range(4)])
        await store.record_submits([submitted(i, 950 + n) for n, i in enumerate(ids[6:])],
                                   "default")
        assert sorted(await store.expire_reports(now=1e6, timeout=60)) == ids[6:]
        due = await store.due_callbacks(now=1e6, limit=20)
        assert sorted(e.ref for e in due) == ids[1::2]
        assert (await store.message(ids[1])).callback == url
        assert (await store.message(ids[0])).callback is None
    with_store(scenario, store_setting)


def test_a_held_callback_waits_without_counting_an_attempt(store_setting):
    async def scenario(store):
        [a] = await store.accept([new(callback="http://app.example/cb")], now=1.0)
        await store.record_submits([SegmentResult(a.id, "cmcc", 1, 1, 9, at=2.0,
                                                  status=DeliveryStatus.REJECTED)], "default")
        [entry] = await store.due_callbacks(now=2.0, limit=10)
        await store.hold_callback(entry.id, until=62.0, reason="URL not verified: HTTP 404")
        assert await store.due_callbacks(now=61.9, limit=10) == []
        [again] = await store.due_callbacks(now=62.0, limit=10)
        assert (again.id, again.attempts, again.created_at) == (entry.id, 0, 2.0)
        assert await store.pending_callbacks() == 1
    with_store(scenario, store_setting)


def test_many_receipt_operations_in_one_commit_each_get_their_own_outcome(store_setting):
    async def scenario(store):
        ids = [a.id for a in await store.accept([new(i) for i in range(300)], now=1.0)]
        await asyncio.gather(*(store.record_submits([submitted(i, 1000 + i)], "default")
                               for i in ids))
        before = store.commits
        outcomes = await asyncio.gather(*(store.record_receipts([receipt(1000 + i)]) for i in ids),
                                        store.record_receipts([receipt(999_999)]))
        assert store.commits - before < 30
        assert [o[0].message_id for o in outcomes[:-1]] == ids
        assert all(o[0].message_status is DeliveryStatus.DELIVERED for o in outcomes[:-1])
        assert not outcomes[-1][0].matched
        assert await store.status_counts() == {"delivered": 300}
    with_store(scenario, store_setting)


def test_a_batch_whose_last_row_differs_is_stored_row_for_row(store_setting):
    # The writer binds a column that is the same in every row of a statement once: a row that
    # differs (last, after 40 that agree) must keep its own values, in every column.
    odd = dict(app="app2", channel="other", template_id="7", kind="marketing",
               callback="https://x.example/s?a='1'&b=\"2\"", recipient="13900139000")
    texts = ["it's \"quoted\" \\ 😀 𝄞 中文", "", "\u2028\t\n"]

    async def scenario(store):
        [first] = await store.accept([new(0, idempotency_key="k0")], now=1.0)
        batch = [new(i, text=texts[i % 3] + str(i), template_id="5", kind="code",
                     idempotency_key=None if i % 2 else f"k{i}") for i in range(1, 41)]
        batch += [new(0, idempotency_key="k0"), new(41, text="odd", **odd)]
        accepted = await store.accept(batch, now=1764656571.123457)
        assert accepted[-2] == (first.id, True) and not any(a.existing for a in accepted[:-2])
        for message, a in zip(batch[:40] + batch[41:], accepted[:40] + accepted[41:]):
            view = await store.message(a.id)
            assert (view.app, view.channel, view.recipient, view.text, view.template_id,
                    view.kind, view.callback, view.created_at) == \
                (message.app, message.channel, message.recipient, message.text,
                 message.template_id, message.kind, message.callback, 1764656571.123457)
    with_store(scenario, store_setting)


def test_submits_and_reports_of_mixed_channels_in_one_call_keep_each_rows_values(store_setting):
    # Msg_Ids at the ends of the unsigned 64-bit range; the last row of each set on another
    # channel and connection, with another Stat and provider. The dispatcher submits a message
    # on its own channel only; one submitted on another (the last: its row says "cmcc") is
    # still recorded as a segment of that channel, where that channel's report finds it.
    msg_ids = [0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1] + list(range(100, 130))

    async def scenario(store):
        ids = [a.id for a in await store.accept([new(i) for i in range(len(msg_ids))], now=1.0)]
        results = [submitted(i, m) for i, m in zip(ids, msg_ids)]
        results[-1] = results[-1]._replace(channel="other", connection="other#3", at=11.25)
        assert await store.record_submits(results, "default") == [None] * len(ids)
        reports = [receipt(m, at=20.0 + k / 8) for k, m in enumerate(msg_ids)]
        reports[-1] = Receipt("other", "other#1", 7, msg_ids[-1],
                              TABLES.for_provider("cmcc").classify("MK:0005"), "2605011200",
                              "2605011201", "13800138000", 9, 30.5)
        outcomes = await store.record_receipts(reports)
        assert [o.message_id for o in outcomes] == ids and all(o.matched for o in outcomes)
        for k, (message_id, msg_id) in enumerate(zip(ids, msg_ids)):
            view = await store.message(message_id)
            [segment] = view.segments
            assert segment.msg_id == msg_id
            if k < len(ids) - 1:
                assert (segment.connection, segment.status, segment.stat, segment.done_at,
                        view.status_provider) == \
                    ("cmcc#0", "delivered", "DELIVRD", 20.0 + k / 8, "default")
        assert (segment.connection, segment.submitted_at, segment.status, segment.stat,
                segment.done_at, view.status_provider) == \
            ("other#3", 11.25, view.status, "MK:0005", 30.5, "cmcc")
        assert view.status != "delivered"
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- the file

def test_a_store_records_its_layout_version_and_refuses_a_newer_one(tmp_path):
    import sqlite3

    from gateway.store import StoreError
    from gateway.store.sqlite.messages import SCHEMA_VERSION

    path = str(tmp_path / "gw.sqlite")

    async def open_and_close(store):
        pass
    with_store(open_and_close, path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()

    async def refused():
        with pytest.raises(StoreError, match="written by a newer cmpp-gateway"):
            await SqliteStore(path).open()
    run(refused)
    db = sqlite3.connect(path)                       # untouched
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


LAYOUT_1_MESSAGES = """CREATE TABLE messages (id INTEGER PRIMARY KEY, app TEXT NOT NULL,
    channel TEXT NOT NULL, recipient TEXT NOT NULL, text TEXT NOT NULL, template_id TEXT,
    kind TEXT NOT NULL, idempotency_key TEXT, reference INTEGER NOT NULL,
    created_at REAL NOT NULL, parts INTEGER, status TEXT NOT NULL DEFAULT 'accepted',
    status_stat TEXT, status_temporary INTEGER, status_provider TEXT, status_at REAL,
    submitted_at REAL, next_attempt_at REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0)"""


def test_a_store_of_layout_1_gains_the_later_columns_and_keeps_its_messages(tmp_path):
    import sqlite3

    from gateway.store.sqlite.messages import SCHEMA_VERSION

    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.execute(LAYOUT_1_MESSAGES)
    db.execute("INSERT INTO messages (app, channel, recipient, text, kind, reference, "
               "created_at) VALUES ('app1', 'cmcc', '13800138000', 'old', 'notification', 0, 1)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()

    async def scenario(store):
        old = await store.message(1)
        assert (old.text, old.callback, old.segments) == ("old", None, ())
        [a] = await store.accept([new(callback="https://app.example/cb")], now=2.0)
        assert (await store.message(a.id)).callback == "https://app.example/cb"
        # And every later layout's columns: a message of one part keeps its SUBMIT on its row.
        await store.record_submits([submitted(1, 71), submitted(a.id, 72)], "default")
        assert [(await store.message(i)).segments[0].msg_id for i in (1, a.id)] == [71, 72]
        assert await store.query("SELECT id, msg_id, priority FROM messages") == \
            [(1, 71, 1), (a.id, 72, 1)]
    with_store(scenario, path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 7
    assert [r[1] for r in db.execute("PRAGMA table_info(messages)")][-6:] == \
        ["callback", "priority", "msg_id", "result", "connection", "sends"]
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_msg_id'") \
        .fetchone()[0] == 1


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path):
    from gateway.store import StoreError

    path = tmp_path / "gw.sqlite"
    path.write_bytes(b"not a database at all, just some text" * 100)

    async def refused():
        with pytest.raises(StoreError, match="not a cmpp-gateway store"):
            await SqliteStore(str(path)).open()
    run(refused)
    assert path.read_bytes() == b"not a database at all, just some text" * 100


def test_an_sqlite_older_than_the_store_needs_is_refused_with_the_versions(tmp_path, monkeypatch):
    import sqlite3

    from gateway.store import StoreError
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")

    async def scenario():
        with pytest.raises(StoreError, match=r"needs SQLite 3\.35\.0 or newer; this Python has 3\.31\.1"):
            await SqliteStore(str(tmp_path / "gw.sqlite")).open()
    run(scenario)
    assert not (tmp_path / "gw.sqlite").exists()


@pytest.mark.parametrize("count", [1, 15, 16, 17, 50, 511, 512, 513, 1100])
def test_multi_row_statements_write_every_row_once_and_count_the_changes(count):
    import sqlite3

    from gateway.store.sqlite.messages import execute_rows
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    rows = [(i, f"v{i}") for i in range(count)]
    assert execute_rows(db, "INSERT INTO t (id, v) VALUES ", "(?, ?)", rows) == count
    assert db.execute("SELECT id, v FROM t ORDER BY id").fetchall() == rows
    updates = [(f"w{i}", i) for i in range(0, count, 2)]
    changed = execute_rows(db, "UPDATE t SET v = v.column1 FROM (VALUES ", "(?, ?)", updates,
                           ") AS v WHERE t.id = v.column2", repeatable=True)
    assert changed == len(updates)
    assert db.execute("SELECT COUNT(*) FROM t WHERE v LIKE 'w%'").fetchone()[0] == len(updates)


@pytest.mark.parametrize("count", [1, 17, 40, 600])
def test_multi_row_statements_bind_shared_columns_once_and_keep_every_value_exact(count):
    import sqlite3

    from gateway.store.sqlite.messages import execute_rows
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, n INTEGER, r REAL, b TEXT, c)")
    ends = [-(1 << 63), (1 << 63) - 1, -(1 << 53) - 1, (1 << 53) + 1, 0]
    reals = [1764656571.1234567, 0.1, 5e-324, 1.7976931348623157e308, -2.5]
    texts = ["it's \"q\" \\", "😀𝄞中文", "a\x00b", "", "\u2028"]
    rows = [(i, "same", ends[i % 5], reals[i % 5], texts[i % 5], None) for i in range(count)]
    rows[-1] = (count - 1, "last\x00differs", ends[-1], reals[-1], "same", "c")
    head, row = "INSERT INTO t (id, a, n, r, b, c) VALUES ", "(?, ?, ?, ?, ?, ?)"
    assert execute_rows(db, head, row, rows, shared=(1, 4, 5)) == count
    assert db.execute("SELECT id, a, n, r, b, c FROM t ORDER BY id").fetchall() == rows
    assert db.execute("SELECT DISTINCT typeof(n) || typeof(r) FROM t").fetchall() == \
        [("integerreal",)]
    updates = [("w", i, "x") for i in range(0, count, 3)]
    changed = execute_rows(db, "UPDATE t SET a = v.column1, c = v.column3 FROM (VALUES ",
                           "(?, ?, ?)", updates, ") AS v WHERE t.id = v.column2",
                           repeatable=True, shared=(0, 2))
    assert changed == len(updates)
    assert db.execute("SELECT id FROM t WHERE a = 'w' AND c = 'x' ORDER BY id").fetchall() == \
        [(i,) for _, i, _ in updates]
