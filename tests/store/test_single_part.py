"""A message of one part keeps its SUBMIT outcome on its messages row (store layout 7): no
segments row, and still one segment to every reader; reports find it wherever it came from
(early, twice, after the report timeout). Each test runs on both backends (tests.conftest's
store_setting), but for those at the end, which look inside an SQLite file of layout 6."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.status import DeliveryStatus, load_tables
from gateway.store import NewMessage, Receipt, SegmentResult, SegmentView, to_signed
from gateway.store.sqlite.messages import SCHEMA_VERSION
from tests.aio import with_store

CODES = load_tables(Path(__file__).resolve().parents[2] / "fixtures" / "providers") \
    .for_provider("default")
BIG = 1 << 63 | 7                        # a Msg_Id stored signed, read back unsigned


def new(i: int = 0) -> NewMessage:
    return NewMessage("app1", "cmcc", "13800138000", f"hello {i}")


def submitted(message_id: int, msg_id: int, at: float = 10.0, connection: str = "cmcc#2",
              sends: int = 1) -> SegmentResult:
    return SegmentResult(message_id, "cmcc", 1, 1, 0, msg_id, connection=connection,
                         sends=sends, at=at)


def refused(message_id: int, at: float = 10.0) -> SegmentResult:
    return SegmentResult(message_id, "cmcc", 1, 1, 13, status=DeliveryStatus.REJECTED, at=at,
                         stat="Result 13")


def receipt(msg_id: int, stat: str = "DELIVRD", at: float = 20.0,
            deliver_msg_id: int | None = None) -> Receipt:
    return Receipt("cmcc", "cmcc#0", msg_id + 1 if deliver_msg_id is None else deliver_msg_id,
                   msg_id, CODES.classify(stat), received_at=at)


async def count(store, table: str) -> int:
    return (await store.query(f"SELECT COUNT(*) FROM {table}"))[0][0]


def test_a_single_part_message_keeps_its_submit_on_its_row_and_shows_one_segment(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        assert await store.record_submits([submitted(a.id, BIG, sends=2)], "default") == [None]
        assert await store.query("SELECT status, msg_id, result, connection, sends, submitted_at "
                                 "FROM messages WHERE id = ?", (a.id,)) == \
            [("submitted", to_signed(BIG), 0, "cmcc#2", 2, 10.0)]
        assert await count(store, "segments") == 0
        view = await store.message(a.id)
        assert (view.status, view.parts) == ("submitted", 1)
        assert view.segments == (SegmentView(1, BIG, 0, "submitted", None, False, "cmcc#2", 10.0,
                                             None),)
        [outcome] = await store.record_receipts([receipt(BIG, at=12.5)])
        assert (outcome.matched, outcome.message_id, outcome.message_status, outcome.latency) == \
            (True, a.id, DeliveryStatus.DELIVERED, 2.5)
        view = await store.message(a.id)
        assert view.segments == (SegmentView(1, BIG, 0, "delivered", "DELIVRD", False, "cmcc#2",
                                             10.0, 12.5),)
        assert await store.query("SELECT message_id, part FROM receipts") == [(a.id, 1)]
        assert await count(store, "segments") == 0
        assert await store.status_counts() == {"delivered": 1}
    with_store(scenario, store_setting)


def test_a_part_answered_twice_in_one_call_keeps_its_last_answer(store_setting):
    # As a segments row replaced by the later answer: the Msg_Id, the refusal, or the Msg_Id
    # after a refusal, whichever came last, and one settling of the message.
    async def scenario(store):
        twice, then_refused, refused_then = [a.id for a in await store.accept(
            [new(1), new(2), new(3)], now=1.0)]
        final = await store.record_submits(
            [submitted(twice, 5), submitted(then_refused, 7), refused(refused_then),
             submitted(twice, 6, at=11.0), refused(then_refused), submitted(refused_then, 8)],
            "default")
        assert final == [None, None, None, None, DeliveryStatus.REJECTED, None]
        views = [await store.message(i) for i in (twice, then_refused, refused_then)]
        assert [(v.status, [(s.msg_id, s.submitted_at) for s in v.segments]) for v in views] == \
            [("submitted", [(6, 11.0)]), ("rejected", [(None, 10.0)]),
             ("submitted", [(8, 10.0)])]
        outcomes = await store.record_receipts([receipt(m) for m in (5, 6, 7, 8)])
        assert [o.message_id for o in outcomes] == [None, twice, None, refused_then]
        assert await store.status_counts() == {"delivered": 2, "rejected": 1}
        assert len(await store.due_callbacks(now=100.0, limit=10)) == 3
    with_store(scenario, store_setting)


def test_a_report_before_its_submit_resp_still_settles_a_single_part_message(store_setting):
    async def scenario(store):
        early, waiting, plain = [a.id for a in await store.accept([new(1), new(2), new(3)],
                                                                  now=1.0)]
        outcomes = await store.record_receipts([receipt(41, at=9.0), receipt(42, "ACCEPTD")])
        assert not any(o.matched for o in outcomes) and await store.unmatched_receipts() == 2
        final = await store.record_submits(
            [submitted(early, 41), submitted(waiting, 42), submitted(plain, 43)], "default")
        assert final == [DeliveryStatus.DELIVERED, None, None]
        assert await store.unmatched_receipts() == 0
        view = await store.message(early)
        assert (view.status, view.status_stat) == ("delivered", "DELIVRD")
        assert [(s.msg_id, s.status, s.stat, s.connection) for s in view.segments] == \
            [(41, "delivered", "DELIVRD", "cmcc#2")]
        # An intermediate report came early: the final one, later, settles the message.
        assert (await store.message(waiting)).status == "submitted"
        [later] = await store.record_receipts([receipt(42, "UNDELIV", at=30.0, deliver_msg_id=9)])
        assert (later.message_id, later.message_status) == \
            (waiting, DeliveryStatus.UNDELIVERABLE)
        assert [(s.msg_id, s.status) for s in (await store.message(plain)).segments] == \
            [(43, "submitted")]
        assert await store.status_counts() == \
            {"delivered": 1, "undeliverable": 1, "submitted": 1}
    with_store(scenario, store_setting)


def test_a_duplicate_report_for_a_single_part_message_changes_nothing(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 5)], "default")
        [first] = await store.record_receipts([receipt(5, "UNDELIV", at=20.0)])
        assert first.message_status is DeliveryStatus.UNDELIVERABLE
        before = await store.message(a.id)
        [again] = await store.record_receipts([receipt(5, "UNDELIV", at=25.0)])   # resent
        assert again.duplicate and not again.matched
        [other] = await store.record_receipts([receipt(5, "DELIVRD", at=26.0, deliver_msg_id=77)])
        assert other.matched and other.message_status is None      # the first final one won
        assert await store.message(a.id) == before
        assert (before.status, before.status_at, before.segments[0].done_at) == \
            ("undeliverable", 20.0, 20.0)
        assert await count(store, "receipts") == 2
        assert len(await store.due_callbacks(now=100.0, limit=10)) == 1
        assert await store.status_counts() == {"undeliverable": 1}
    with_store(scenario, store_setting)


def test_the_report_timeout_ends_a_single_part_message_unknown_for_good(store_setting):
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 5, at=10.0)], "default")
        assert await store.expire_reports(now=100.0, timeout=60.0) == [a.id]
        view = await store.message(a.id)
        assert (view.status, view.status_at) == ("unknown", 100.0)
        assert view.segments == (SegmentView(1, 5, 0, "unknown", None, False, "cmcc#2", 10.0,
                                             100.0),)
        [late] = await store.record_receipts([receipt(5, at=120.0)])
        assert (late.matched, late.message_id, late.message_status) == (True, a.id, None)
        assert await store.message(a.id) == view
        assert await store.expire_reports(now=500.0, timeout=60.0) == []
        assert len(await store.due_callbacks(now=600.0, limit=10)) == 1
        assert await store.status_counts() == {"unknown": 1}
    with_store(scenario, store_setting)


# ----------------------------------------------------------------------------- SQLite files

def as_layout_6(path: str) -> None:
    """Make a new store file what layout 6 was: no messages.msg_id, .result, .connection,
    .sends, no index messages_msg_id (the only changes of layout 7), PRAGMA user_version 6."""
    db = sqlite3.connect(path)
    db.execute("DROP INDEX messages_msg_id")
    for column in ("sends", "connection", "result", "msg_id"):
        db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
    db.execute("PRAGMA user_version=6")
    db.commit()
    db.close()


def submit_as_layout_6(path: str, message_id: int, msg_id: int, at: float) -> None:
    """Record a single-part message's SUBMIT as layout 6 did: a segments row, and the message
    made submitted."""
    db = sqlite3.connect(path)
    db.execute("INSERT INTO segments (message_id, part, parts, channel, msg_id, result, "
               "connection, sends, submitted_at, status, temporary) "
               "VALUES (?, 1, 1, 'cmcc', ?, 0, 'cmcc#0', 1, ?, 'submitted', 0)",
               (message_id, msg_id, at))
    db.execute("UPDATE messages SET status = 'submitted', parts = 1, submitted_at = ?, "
               "status_at = ? WHERE id = ?", (at, at, message_id))
    db.commit()
    db.close()


def test_a_layout_6_file_opens_as_layout_7_and_its_old_submits_still_match(tmp_path):
    path = str(tmp_path / "old.sqlite")

    async def accept(store):
        await store.accept([new(1), new(2)], now=1.0)
    with_store(accept, path)
    as_layout_6(path)
    submit_as_layout_6(path, 1, 41, at=10.0)

    async def scenario(store):
        old = await store.message(1)
        assert [(s.msg_id, s.status, s.connection) for s in old.segments] == \
            [(41, "submitted", "cmcc#0")]
        await store.record_submits([submitted(2, 42)], "default")          # the new way
        assert await store.query("SELECT id, msg_id FROM messages ORDER BY id") == \
            [(1, None), (2, 42)]
        outcomes = await store.record_receipts([receipt(41), receipt(42)])
        assert [(o.message_id, o.message_status) for o in outcomes] == \
            [(1, DeliveryStatus.DELIVERED), (2, DeliveryStatus.DELIVERED)]
        assert await store.query("SELECT message_id, status FROM segments") == \
            [(1, "delivered")]
        assert [(await store.message(i)).segments[0].status for i in (1, 2)] == \
            ["delivered"] * 2
        assert await store.status_counts() == {"delivered": 2}
    with_store(scenario, path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_msg_id'") \
        .fetchone()[0] == 1


def test_an_answer_the_row_cannot_take_is_kept_in_a_segments_row_as_before_layout_7(tmp_path):
    # A message already submitted and answered again in a later call (not by this
    # dispatcher, which answers a part once): the later answer wins, in a segments row as
    # every answer was before layout 7 (which replaced the earlier one), and the row gives
    # up its own, so that the part is in one place. An answer the row has already is no news.
    async def scenario(store):
        [a] = await store.accept([new()], now=1.0)
        await store.record_submits([submitted(a.id, 5)], "default")
        assert await store.record_submits([submitted(a.id, 5, at=10.5)], "default") == [None]
        assert await count(store, "segments") == 0
        assert await store.record_submits([submitted(a.id, 6, at=11.0)], "default") == [None]
        assert await store.query("SELECT status, msg_id, connection FROM messages") == \
            [("submitted", None, None)]
        assert await store.query("SELECT msg_id, submitted_at FROM segments") == [(6, 11.0)]
        assert [s.msg_id for s in (await store.message(a.id)).segments] == [6]
        outcomes = await store.record_receipts([receipt(6, "UNDELIV"), receipt(5)])
        assert [(o.message_id, o.message_status) for o in outcomes] == \
            [(a.id, DeliveryStatus.UNDELIVERABLE), (None, None)]
        assert await store.status_counts() == {"undeliverable": 1}
    with_store(scenario, str(tmp_path / "gw.sqlite"))
