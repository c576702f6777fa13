"""The report journal: reports answered before their commit, and stored again after a crash.

The journal's file format, bounds and clean-up on its own; then the receipt handler with it:
a DELIVER answered while its commit is still pending, and, after the handler is dropped with
that commit never made (a crash), the next handler's ``replay`` storing the report in a real
store. The daemon under SIGKILL, with the journal in use, is tests/pipeline/test_crash.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from prometheus_client import CollectorRegistry

import cmpp
from cmpp import events as ev
from gateway.ops import Metrics
from gateway.pipeline import ReceiptHandler, ReportJournal
from gateway.pipeline.journal import Record
from gateway.status import provider_tables
from gateway.store import SqliteStore
from tests.aio import run

CHANNEL = "cmcc/gd"          # not a file name as it is: the journal quotes it


def record(n: int, stat: str = "DELIVRD") -> tuple:
    return (f"conn-{n % 2}", 1000 + n, 5000 + n, stat, "2612031200", "2612031201",
            f"1380013{n:04d}", n, 1_700_000_000.5 + n)


def files(directory) -> list[str]:
    return sorted(p.name for p in directory.glob("*.journal")) if directory.exists() else []


# ----------------------------------------------------------------------------- the journal

def test_batches_come_back_in_order_after_a_crash(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL)
    first, second = [record(n) for n in range(3)], [record(n) for n in range(3, 5)]
    assert journal.write(first) == journal.write(second) == 0
    assert journal.unsettled == 5
    # A crash: nothing committed, the file left as it is. The next run reads it back.
    again = ReportJournal(tmp_path, CHANNEL)
    (path, records), = again.left_behind()
    assert path.name == "cmcc%2Fgd.0.journal"
    assert records == [Record(*r) for r in first + second]
    again.replayed(path)
    assert files(tmp_path) == []


def frames_end(data: bytes) -> int:
    """Where the zeros after a file's last frame begin."""
    offset = 0
    while data[offset:offset + 8] != bytes(8):
        offset += 8 + int.from_bytes(data[offset:offset + 4], "big")
    return offset


def test_a_frame_cut_short_ends_the_replay_at_the_batch_before_it(tmp_path, caplog):
    journal = ReportJournal(tmp_path, CHANNEL)
    journal.write([record(1)])
    journal.write([record(2), record(3)])
    path = tmp_path / "cmcc%2Fgd.0.journal"
    whole = path.read_bytes()
    end = frames_end(whole)
    cases = [(whole[:end - 1], [record(1)]),          # the last batch's data cut short
             (whole[:end - 7] + bytes(7), [record(1)]),
             (whole[:end] + b"\x00\x00\x01", [record(1), record(2), record(3)]),   # a header
             (whole[:end] + b"\x00\x00\x01\x00" + bytes(100), [record(1), record(2), record(3)])]
    for data, expected in cases:
        path.write_bytes(data)
        with caplog.at_level(logging.WARNING, logger="cmpp_gateway.receipts"):
            (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
        assert records == [Record(*r) for r in expected]
        assert "not a whole batch" in caplog.text
        caplog.clear()
    path.write_bytes(whole)            # as written: zeros after the last frame are its end
    with caplog.at_level(logging.WARNING, logger="cmpp_gateway.receipts"):
        (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert len(records) == 3 and caplog.text == ""


def test_a_frame_that_fails_its_crc_is_not_replayed(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL)
    journal.write([record(1)])
    journal.write([record(2)])
    path = tmp_path / "cmcc%2Fgd.0.journal"
    data = bytearray(path.read_bytes())
    data[frames_end(bytes(data)) - 3] ^= 0xFF         # a byte of the second batch's data
    path.write_bytes(bytes(data))
    (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert records == [Record(*record(1))]


def test_files_are_deleted_once_every_batch_in_them_is_committed(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL, file_bytes=300)
    numbers = [journal.write([record(n), record(n + 100)]) for n in range(6)]
    assert numbers[0] == 0 and numbers[-1] > 0            # it went on to further files
    assert len(files(tmp_path)) == numbers[-1] + 1
    for n, number in enumerate(numbers[:-1]):
        journal.committed(number, 2)
    # Every closed file is gone; the one being written stays until closed or full.
    assert journal.unsettled == 2
    assert files(tmp_path) == [f"cmcc%2Fgd.{numbers[-1]}.journal"]
    journal.committed(numbers[-1], 2)
    journal.close()
    assert files(tmp_path) == [] and journal.unsettled == 0


def test_a_file_with_a_batch_not_committed_is_kept(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL)
    a, b = journal.write([record(1)]), journal.write([record(2)])
    journal.committed(a, 1)             # b's store operation failed: never committed
    journal.close()
    (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert records[-1] == Record(*record(2)) and b == a


def test_at_the_limit_reports_wait_for_their_commit(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL, limit=5)
    assert journal.write([record(n) for n in range(4)]) == 0
    assert journal.write([record(4), record(5)]) is None       # 6 > 5: not journalled
    assert journal.write([record(4)]) == 0
    assert journal.write([record(6)]) is None
    journal.committed(0, 4)
    assert journal.unsettled == 1 and journal.write([record(6)]) == 0


def test_a_new_journal_never_writes_into_a_file_left_behind(tmp_path):
    ReportJournal(tmp_path, CHANNEL).write([record(1)])          # a crash left file 0
    journal = ReportJournal(tmp_path, CHANNEL)                 # left_behind not called
    number = journal.write([record(2)])
    journal.committed(number, 1)
    journal.close()
    assert number == 1 and files(tmp_path) == ["cmcc%2Fgd.0.journal"]
    (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert records == [Record(*record(1))]


def test_files_of_channels_no_longer_configured_are_found(tmp_path):
    from gateway.pipeline.journal import orphans
    ReportJournal(tmp_path, "gone").write([record(1)])
    ReportJournal(tmp_path, CHANNEL).write([record(2)])
    assert orphans(tmp_path, [CHANNEL]) == ["gone.0.journal"]
    assert orphans(tmp_path, [CHANNEL, "gone"]) == []
    assert orphans(tmp_path / "absent", [CHANNEL]) == []


def test_channels_keep_their_own_files(tmp_path):
    ReportJournal(tmp_path, "a").write([record(1)])
    ReportJournal(tmp_path, "ab").write([record(2)])
    (_, records), = ReportJournal(tmp_path, "a").left_behind()
    assert records == [Record(*record(1))]


def test_a_full_disk_is_logged_once_and_reports_wait_for_their_commit(tmp_path, monkeypatch,
                                                                      caplog):
    journal = ReportJournal(tmp_path, CHANNEL, file_bytes=200)
    assert journal.write([record(1)]) == 0

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    with caplog.at_level(logging.ERROR, logger="cmpp_gateway.receipts"):
        assert journal.write([record(2), record(3)]) is None       # needs a new file
        assert journal.write([record(2), record(3)]) is None
    assert caplog.text.count("No space left on device") == 1
    assert files(tmp_path) == ["cmcc%2Fgd.0.journal"]            # no file half made
    monkeypatch.undo()
    number = journal.write([record(4), record(5)])
    assert number > 0 and journal.unsettled == 3
    journal.committed(0, 1)              # file 0, closed for the new one, goes now
    assert files(tmp_path) == [f"cmcc%2Fgd.{number}.journal"]


def test_a_batch_larger_than_a_file_gets_a_file_of_its_own(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL, file_bytes=100)
    batch = [record(n) for n in range(50)]
    assert journal.write(batch) == 0
    (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert records == [Record(*r) for r in batch]


def test_only_a_local_file_at_synchronous_normal_has_a_journal(tmp_path):
    assert SqliteStore(str(tmp_path / "s.sqlite")).report_journal_directory() == \
        tmp_path / "s.sqlite.reports"
    assert SqliteStore(str(tmp_path / "s.sqlite"), synchronous="FULL") \
        .report_journal_directory() is None
    assert SqliteStore(":memory:").report_journal_directory() is None


# ----------------------------------------------------------------------------- the handler

class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.answered: list[cmpp.Deliver] = []

    def acknowledge_delivers(self, delivers) -> bool:
        self.answered.extend(delivers)
        return True


class HeldStore:
    """A store whose commits never come: the process dies before them."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future] = []

    def record_receipts(self, receipts):
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]


def report_event(n: int) -> ev.ReportReceived:
    report = cmpp.StatusReport(msg_id=5000 + n, stat="DELIVRD", submit_time="2612031200",
                               done_time="2612031201", dest_terminal_id="13800138000",
                               smsc_sequence=n)
    deliver = cmpp.Deliver(sequence_id=n, msg_id=1000 + n, registered_delivery=1,
                           report=report)
    return ev.ReportReceived(deliver=deliver, report=report)


def handler(store, journal, metrics: Metrics | None = None) -> ReceiptHandler:
    codes = provider_tables().for_provider("default")
    metrics = metrics or Metrics(CollectorRegistry())
    return ReceiptHandler(CHANNEL, store, codes, metrics.channel(CHANNEL, codes),
                          journal=journal)


def test_a_journalled_report_is_answered_before_its_commit_and_stored_after_a_crash(tmp_path):
    directory = tmp_path / "s.sqlite.reports"

    async def scenario():
        held, conn = HeldStore(), Conn("c1")
        first = handler(held, ReportJournal(directory, CHANNEL))
        for n in range(3):
            first.on_deliver(conn, report_event(n))
        await asyncio.sleep(0)                   # the loop iteration's reports go together
        assert [d.sequence_id for d in conn.answered] == [0, 1, 2]
        assert len(held.futures) == 1 and not held.futures[0].done()
        # The process dies here. The next run stores them before its pool connects.
        async with opened_store(tmp_path) as store:
            second = handler(store, ReportJournal(directory, CHANNEL))
            assert await second.replay() == 3
            rows = await store.query("SELECT deliver_msg_id, msg_id, stat, connection, "
                                     "smsc_sequence FROM receipts ORDER BY deliver_msg_id")
            assert rows == [(1000 + n, 5000 + n, "DELIVRD", "c1", n) for n in range(3)]
            assert files(directory) == []
            # The ISMG sends one again anyway (its answer was lost): a duplicate, not stored.
            third = handler(store, ReportJournal(directory, CHANNEL))
            conn2 = Conn("c2")
            third.on_deliver(conn2, report_event(1))
            await asyncio.sleep(0)
            assert [d.sequence_id for d in conn2.answered] == [1]
            await asyncio.wait_for(_until(lambda: third.journal.unsettled == 0), 5)
            assert len(await store.query("SELECT id FROM receipts")) == 3
            await third.close()
            assert files(directory) == []
    run(scenario)


def test_without_a_journal_a_report_is_answered_only_after_its_commit(tmp_path):
    async def scenario():
        held, conn = HeldStore(), Conn("c1")
        h = handler(held, None)
        h.on_deliver(conn, report_event(1))
        await asyncio.sleep(0.01)
        assert conn.answered == [] and len(held.futures) == 1
        async with opened_store(tmp_path) as store:
            h.store = store
            h.on_deliver(conn, report_event(2))
            await asyncio.wait_for(_until(lambda: conn.answered), 5)
            assert [d.sequence_id for d in conn.answered] == [2]
    run(scenario)


def test_at_the_journal_limit_reports_are_answered_after_their_commit(tmp_path):
    async def scenario():
        held, conn = HeldStore(), Conn("c1")
        h = handler(held, ReportJournal(tmp_path, CHANNEL, limit=2))
        h.on_deliver(conn, report_event(1))
        h.on_deliver(conn, report_event(2))
        await asyncio.sleep(0)
        h.on_deliver(conn, report_event(3))
        await asyncio.sleep(0)
        assert [d.sequence_id for d in conn.answered] == [1, 2]
        held.futures[1].set_result([])          # the third report's commit
        await asyncio.sleep(0)
        assert [d.sequence_id for d in conn.answered] == [1, 2, 3]
    run(scenario)


def test_reports_replayed_that_were_already_stored_are_counted_as_duplicates(tmp_path):
    directory = tmp_path / "s.sqlite.reports"

    async def scenario():
        async with opened_store(tmp_path) as store:
            registry = CollectorRegistry()
            metrics = Metrics(registry)
            h = handler(store, ReportJournal(directory, CHANNEL), metrics)
            conn = Conn("c1")
            for n in range(4):
                h.on_deliver(conn, report_event(n))
            await asyncio.wait_for(_until(lambda: h.journal.unsettled == 0 and conn.answered), 5)
            # Killed now: committed, but the file being written is still there.
            assert files(directory) == ["cmcc%2Fgd.0.journal"]
            again = handler(store, ReportJournal(directory, CHANNEL), metrics)
            assert await again.replay() == 4
            assert registry.get_sample_value("cmpp_duplicate_receipts_total",
                                             {"channel": CHANNEL}) == 4
            assert len(await store.query("SELECT id FROM receipts")) == 4
            assert files(directory) == []
    run(scenario)


class FailingOnceStore:
    """Fails its first commit, as a store that cannot write for a moment."""

    def __init__(self, store) -> None:
        self.store, self.calls = store, 0

    def record_receipts(self, receipts):
        self.calls += 1
        if self.calls == 1:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(OSError(5, "Input/output error"))
            return future
        return self.store.record_receipts(receipts)


def test_a_journalled_batch_the_store_fails_is_kept_and_stored_again(tmp_path):
    directory = tmp_path / "s.sqlite.reports"

    async def scenario():
        async with opened_store(tmp_path) as store:
            flaky, conn = FailingOnceStore(store), Conn("c1")
            h = handler(flaky, ReportJournal(directory, CHANNEL, file_bytes=100))
            h.on_deliver(conn, report_event(1))
            await asyncio.sleep(0)
            assert [d.sequence_id for d in conn.answered] == [1]      # before the commit
            h.on_deliver(conn, report_event(2))          # the next batch: a file of its own
            await asyncio.wait_for(_until(lambda: flaky.calls >= 2), 5)
            assert files(directory)[0] == "cmcc%2Fgd.0.journal"       # the failed one stays
            await asyncio.wait_for(_until(lambda: h.journal.unsettled == 0), 5)   # 1 s later
            assert flaky.calls == 3
            assert len(await store.query("SELECT id FROM receipts")) == 2
            await h.close()
            assert files(directory) == []
    run(scenario)


def test_a_closed_file_with_a_batch_not_committed_stays(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL, file_bytes=400)
    a, b = journal.write([record(1)]), journal.write([record(2)])
    c = journal.write([record(n) for n in range(3, 9)])        # does not fit: file 1
    assert a == b == 0 and c == 1
    journal.committed(b, 1)
    assert files(tmp_path)[0] == "cmcc%2Fgd.0.journal"          # closed, a not committed
    journal.committed(a, 1)
    assert files(tmp_path) == ["cmcc%2Fgd.1.journal"]


def test_replay_reads_every_file_left_behind_in_order(tmp_path):
    journal = ReportJournal(tmp_path, CHANNEL, file_bytes=100)
    batches = [[record(n), record(n + 10)] for n in range(4)]
    assert [journal.write(b) for b in batches] == [0, 1, 2, 3]
    left = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert [records for _, records in left] == [[Record(*r) for r in b] for b in batches]


def test_a_file_filled_to_within_a_header_of_its_end_replays_without_a_warning(tmp_path,
                                                                             caplog):
    path = tmp_path / "cmcc%2Fgd.0.journal"
    ReportJournal(tmp_path, CHANNEL).write([record(1)])
    end = frames_end(path.read_bytes())
    path.write_bytes(path.read_bytes()[:end + 5])                # 5 zeros after the frame
    with caplog.at_level(logging.WARNING, logger="cmpp_gateway.receipts"):
        (_, records), = ReportJournal(tmp_path, CHANNEL).left_behind()
    assert records == [Record(*record(1))] and caplog.text == ""


class FullStore:
    async def record_receipts(self, receipts):
        raise OSError(28, "No space left on device")


def test_a_replay_the_store_cannot_take_is_kept_and_the_start_goes_on(tmp_path, caplog):
    ReportJournal(tmp_path, CHANNEL).write([record(1), record(2)])

    async def scenario():
        h = handler(FullStore(), ReportJournal(tmp_path, CHANNEL))
        with caplog.at_level(logging.ERROR, logger="cmpp_gateway.receipts"):
            assert await h.replay() == 0
        assert "kept for the next start" in caplog.text and "No space" in caplog.text
        assert files(tmp_path) == ["cmcc%2Fgd.0.journal"]
        # New reports go to a file of their own, never into the one kept.
        assert h.journal.write([record(3)]) == 1
    run(scenario)


@contextlib.asynccontextmanager
async def opened_store(tmp_path):
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
