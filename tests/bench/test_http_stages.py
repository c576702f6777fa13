"""The HTTP bench's account of its stages: SUBMITs and reports a second while the load ran,
while SUBMITs went on after it, and after the last SUBMIT, read from a real store: an SQLite
file, and a PostgreSQL database."""

import asyncio

import asyncpg
import pytest

from gateway.bench.http import stage_rates
from gateway.bench.http_gateway import PostgresReader, StoreReader
from gateway.store.sqlite.schema import open_database

SUBMITS = [10.5, 11, 11.5, 12, 12.5, 13, 13.5, 14]
REPORTS = [11, 12, 13, 14, 14.5, 15, 15, 15.5, 16, 16]


def _fill(execute, submits: list[float], reports: list[float], earlier: int, place: str):
    """``earlier`` messages (and a SUBMIT and a report each) from an earlier phase at time 0,
    then one message a SUBMIT time of ``submits``, and reports at ``reports``, by
    ``execute(statement, *params)`` (``{n}``: the n-th parameter). ``place``: where a
    message's SUBMIT is: "segments", a segments row (a long message's parts, and every message
    before store layout 7); "rows", every other message's on its messages row (layout 7's
    single-part messages)."""
    times = [0.0] * earlier + submits
    for i, at in enumerate(times, start=1):
        execute("INSERT INTO messages (id, app, channel, recipient, text, kind, reference, "
                "created_at) VALUES ({1}, 'a', 'c', '13800000000', 't', 'notification', 0, 0)",
                i)
        if place == "rows" and i % 2:
            execute("UPDATE messages SET status = 'submitted', parts = 1, msg_id = {1}, "
                    "result = 0, sends = 1, submitted_at = {2}, status_at = {2} WHERE id = {1}",
                    i, at)
            continue
        execute("INSERT INTO segments (message_id, part, parts, channel, msg_id, result, "
                "sends, submitted_at, status) VALUES ({1}, 1, 1, 'c', {1}, 0, 1, {2}, "
                "'submitted')", i, at)
    for i, at in enumerate([0.0] * earlier + reports, start=1):
        execute("INSERT INTO receipts (channel, deliver_msg_id, msg_id, stat, temporary, "
                "provider, received_at) VALUES ('c', {1}, {1}, 'DELIVRD', 0, 'p', {2})", i, at)


def _store(path, submits: list[float], reports: list[float], earlier: int = 0,
           place: str = "segments"):
    """An SQLite store filled by ``_fill``; ``place`` may also be "baseline": segments rows in
    a file of layout 6, without messages.msg_id (the store of a baseline checkout)."""
    db = open_database(str(path), "NORMAL").db
    marks = [f"?{n}" for n in range(10)]
    _fill(lambda statement, *params: db.execute(statement.format(*marks), params),
          submits, reports, earlier, "segments" if place == "baseline" else place)
    if place == "baseline":
        db.execute("DROP INDEX messages_msg_id")
        for column in ("sends", "connection", "result", "msg_id"):
            db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
        db.execute("PRAGMA user_version=6")
    db.close()
    return StoreReader(str(path))


def _assert_stages(reader) -> None:
    """Load from 10 to 12 s: 4 SUBMITs and 2 reports in it; SUBMITs go on until 14 s (4 more,
    with 2 reports), then 6 reports until 16 s. An earlier phase's 3 rows are not counted."""
    stages = reader.stages(after_id=3, after_receipt=3, load_end=12.0)
    rates = stage_rates(stages, first_request=10.0, load_end=12.0)
    assert rates["loading_submits"] == pytest.approx(4 / 2)
    assert rates["loading_reports"] == pytest.approx(2 / 2)
    assert rates["submitting_seconds"] == pytest.approx(2)
    assert rates["submitting_submits"] == pytest.approx(4 / 2)
    assert rates["submitting_reports"] == pytest.approx(2 / 2)
    assert rates["after_seconds"] == pytest.approx(2)
    assert rates["reports_after"] == pytest.approx(6 / 2)
    assert rates["draining"] == pytest.approx((4 + 8) / 4)
    assert (stages["submitted"], stages["last_submit"]) == (8, 14)


@pytest.mark.parametrize("place", ["segments", "rows", "baseline"])
def test_each_stage_counts_what_happened_in_its_span(tmp_path, place):
    # The same wherever the SUBMITs are kept, on messages rows or segments rows.
    reader = _store(tmp_path / "s.sqlite", SUBMITS, REPORTS, earlier=3, place=place)
    assert reader._submits_on_rows() is (place != "baseline")
    _assert_stages(reader)


@pytest.mark.parametrize("place", ["segments", "rows"])
def test_the_postgresql_reader_counts_the_same_stages(store_settings, tmp_path, place):
    with store_settings("postgresql", tmp_path) as url:
        async def fill():
            db = await asyncpg.connect(url)
            statements = []
            _fill(lambda statement, *params: statements.append((statement, params)),
                  SUBMITS, REPORTS, 3, place)
            marks = [f"${n}" for n in range(10)]
            for statement, params in statements:
                await db.execute(statement.format(*marks), *params)
            await db.close()
        asyncio.run(fill())
        reader = PostgresReader(url)
        try:
            assert reader._submits_on_rows()
            _assert_stages(reader)
            assert reader.last_id() == 11 and reader.last_receipt_id() == 13
            assert reader.unfinished() == 11 and reader.outcome(3)["accepted"][0] == \
                (8 if place == "segments" else 4)
        finally:
            reader.close()


def test_submits_on_messages_rows_are_counted_with_those_in_segments_rows(tmp_path):
    # Four single-part messages with their SUBMIT on their row (ids 1, 3, 5, 7), four with a
    # segments row: a reader of segments alone would count 4, 2 of them while loading.
    reader = _store(tmp_path / "s.sqlite", SUBMITS, reports=[], place="rows")
    assert reader.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0] == 4
    stages = reader.stages(after_id=0, after_receipt=0, load_end=12.0)
    assert (stages["submitted"], stages["submitted_loading"], stages["last_submit"]) == \
        (8, 4, 14)


def test_spans_that_did_not_happen_are_left_out(tmp_path):
    # Everything was submitted and reported while the load ran: nothing drained.
    reader = _store(tmp_path / "s.sqlite", submits=[10.5, 11], reports=[10.6, 11.2])
    rates = stage_rates(reader.stages(0, 0, load_end=12.0), first_request=10.0, load_end=12.0)
    assert rates == {"loading_submits": pytest.approx(1), "loading_reports": pytest.approx(1)}


def test_reports_after_the_last_submit_of_a_load_that_submitted_everything(tmp_path):
    # The SUBMITs ended with the load; reports went on for 3 s.
    reader = _store(tmp_path / "s.sqlite", submits=[10.5, 11], reports=[11.5, 13, 15])
    rates = stage_rates(reader.stages(0, 0, load_end=12.0), first_request=10.0, load_end=12.0)
    assert "submitting_submits" not in rates
    assert rates["after_seconds"] == pytest.approx(3)
    assert rates["reports_after"] == pytest.approx(2 / 3)
    assert rates["draining"] == pytest.approx(2 / 3)
