"""The embedded store: SQLite in WAL mode, written by one thread with group commit.

Operations are queued in lanes (below); the writer thread takes what a lane holds (up to
``batch_limit``), runs it in one transaction and, after COMMIT, hands the whole batch's outcomes
back to the event loop in one call, which resolves their futures. The next batch starts as soon
as the last one is committed, without waiting for the event loop. If a transaction fails, each
of its operations is retried in a transaction of its own, so one bad operation fails alone.
Operations wait in three lanes (``gateway.store.lanes``): operations on urgent messages alone
(accepting a verification code, fetching urgent messages) are committed next, in a small
transaction of their own, so that they never wait behind the bulk work queued before them (a
batch of a thousand notifications, a burst of receipts), only for the transaction being
committed; otherwise the pipeline's operations (SUBMIT outcomes, reports, fetches) and the rest
(bulk: accepts and everything else) take turns, a bounded amount of bulk work a transaction, so
that submits and reports go on while batches are being accepted.
``synchronous=NORMAL`` (the default) survives a crash of the process; ``FULL`` also survives a
power cut, at an fsync per commit.

When a transaction fails because the store cannot write (disk full, I/O error, read-only,
locked), its operations fail with ``StoreUnavailable`` and the store says so
(``writable_snapshot``, for /readyz) until a probe every ``probe_interval`` seconds finds that
it can write again (see ``health``); a store that cannot write when it opens says so from the
start. Each transaction's duration is kept in a histogram (``commit_snapshot``). The
operations themselves, one SQL function of this package's modules each, are
``gateway.store.queued``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

from ..lanes import BULK, BULK_ROWS, URGENT_LANE, Lanes, Op
from ..queued import QueuedStore
from ..records import StoreUnavailable
from ..timing import CommitTimes
from . import api as api_sql
from . import console as console_sql
from . import health, retention, schema, search
from . import messages as sql
from . import receipts as receipts_sql
from . import users as users_sql
from .state import State

log = logging.getLogger("cmpp_gateway.store")

_STOP = object()          # queued by close(): the writer finishes what came before and ends
_WAKE = object()          # queued with an operation while the writer waits: wakes it


class SqliteStore(QueuedStore):
    """``Store`` on one SQLite file (``":memory:"`` for tests that need no file)."""

    _messages, _receipts, _api, _users = sql, receipts_sql, api_sql, users_sql
    _console, _retention, _search = console_sql, retention, search

    def __init__(self, path: str, *, synchronous: str = "NORMAL", batch_limit: int = 4000,
                 probe_interval: float = 2.0, max_pages: int | None = None,
                 bulk_rows: int = BULK_ROWS) -> None:
        """``max_pages``: the file may not grow beyond this many pages (``PRAGMA
        max_page_count``; None: as the disk allows): a store that fills up, for tests.
        ``bulk_rows``: rows of bulk work (accepted messages) in one transaction at most
        (``gateway.store.lanes``)."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.path = self.name = path
        self.synchronous = synchronous
        self.batch_limit = batch_limit
        self.probe_interval = probe_interval
        self.max_pages = max_pages
        self._state: State | None = None
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()     # wakes the writer
        self._idle = False              # the writer waits on the inbox: an operation wakes it
        self._lanes = Lanes(batch_limit, bulk_rows)    # the operations (see the module's doc)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None
        self._stopped: asyncio.Future | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_db: sqlite3.Connection | None = None
        self.commits = 0              # transactions run, for metrics and tests
        self.commit_times = CommitTimes()         # for cmpp_store_commit_seconds
        self.write_error: str | None = None     # why the store cannot write; None: it can
        self._probe_at = 0.0

    def report_journal_directory(self) -> Path | None:
        """``<file>.reports`` beside the file at ``synchronous=NORMAL``, where a commit
        survives a crash of the process and so does a write to a file; None in memory (nothing
        survives) and at ``FULL`` (a journal would need an fsync a batch to match it)."""
        if self.path == ":memory:" or self.path.startswith("file:") or \
                self.synchronous != "NORMAL":
            return None
        return Path(self.path + ".reports")

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Open the file and start the writer. Raises StoreError when the file is not a store
        this version can use."""
        loop = asyncio.get_running_loop()
        opened, self._stopped = loop.create_future(), loop.create_future()
        self._writer = threading.Thread(target=self._write, args=(loop, opened),
                                        name="store-writer", daemon=True)
        self._writer.start()
        try:
            self._state = await opened
        except BaseException:
            self._inbox.put(_STOP)                  # if it did open, it closes again
            self._writer = None
            raise
        self._loop = loop

    async def close(self) -> None:
        """Finish every queued operation (and the batch being committed), then close."""
        if self._loop is None:
            return
        self._loop = None                           # no new operations from here on
        self._inbox.put(_STOP)
        await self._stopped
        self._writer.join()
        self._writer = None
        if self._reader is not None:
            self._reader.submit(self._close_reader)
            self._reader.shutdown(wait=True)
            self._reader = None

    # ------------------------------------------------------------------------- the engine

    def _submit(self, fn, *args, urgent: bool = False, lane: int = BULK,
                rows: int = 1) -> asyncio.Future:
        """Queue ``fn(state, *args)`` in its lane (``urgent``: the urgent one), ``rows`` rows
        of bulk work; its future is resolved after the COMMIT."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the store is not open")
        future = loop.create_future()
        self._lanes.put(Op(fn, args, future, rows), URGENT_LANE if urgent else lane)
        if self._idle:                # else the writer takes it after its transaction
            self._idle = False
            self._inbox.put(_WAKE)
        return future

    def _write(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future) -> None:
        """The writer thread: open the file, then commit batches until close() says stop."""
        try:
            state = schema.open_database(self.path, self.synchronous)
            if self.max_pages is not None:
                state.db.execute(f"PRAGMA max_page_count={int(self.max_pages)}")
            for module in (api_sql, users_sql, console_sql, retention, health):
                module.create_schema(state)
        except BaseException as error:  # noqa: BLE001 - reported to open()'s caller
            _post(loop, _settle_future, opened, False, error)
            _post(loop, _settle_future, self._stopped, True, None)
            return
        self._state = state
        self._probe(state)
        _post(loop, _settle_future, opened, True, state)
        try:
            self._serve(loop, state)
        finally:
            state.db.close()
            _post(loop, _settle_future, self._stopped, True, None)

    def _serve(self, loop: asyncio.AbstractEventLoop, state: State) -> None:
        """Commit batches until close() says stop and every lane is empty; probe while the
        store cannot write."""
        inbox, lanes, stopping = self._inbox, self._lanes, False
        while lanes or not stopping:
            if self.write_error is not None and time.monotonic() >= self._probe_at:
                self._probe(state)
            self._idle = True
            try:
                token = inbox.get_nowait() if lanes else inbox.get(timeout=self._probe_wait())
                while True:                 # the tokens of what came meanwhile
                    stopping = stopping or token is _STOP
                    token = inbox.get_nowait()
            except queue.Empty:
                pass
            self._idle = False
            self._commit(loop, lanes.next_batch())

    def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[Op]) -> None:
        """Writer thread: run ``batch`` and hand its outcomes to the event loop."""
        if not batch:
            return
        try:
            outcomes = self._run(batch)
        except Exception as error:  # noqa: BLE001 - e.g. a rollback that failed
            outcomes = [(False, error)] * len(batch)
        _post(loop, _resolve, batch, outcomes)

    def _probe_wait(self) -> float | None:
        if self.write_error is None:
            return None
        return max(0.0, self._probe_at - time.monotonic())

    def _probe(self, state: State) -> None:
        """Writer thread: find out whether the store can write (see health.probe)."""
        try:
            health.probe(state)
        except Exception as error:  # noqa: BLE001 - classified: a write error or a bug
            self._probe_at = time.monotonic() + self.probe_interval
            self._cannot_write(health.write_error(error) or
                               f"the store cannot write: {type(error).__name__}: {error}")
            return
        if self.write_error is not None:
            log.warning("the store can write again")
            self.write_error = None

    def _cannot_write(self, reason: str) -> None:
        if self.write_error is None:
            log.error("%s; not ready until a write succeeds (probing every %g s)", reason,
                      self.probe_interval)
            self._probe_at = time.monotonic() + self.probe_interval
        self.write_error = reason

    def _failed(self, error: Exception) -> Exception:
        """A failed operation's exception, as its caller gets it: StoreUnavailable (and the
        store marked not writable) when the store could not write."""
        reason = health.write_error(error)
        if reason is None:
            return error
        self._cannot_write(reason)
        unavailable = StoreUnavailable(reason)
        unavailable.__cause__ = error
        return unavailable

    def _run(self, batch: list[Op]) -> list[tuple[bool, object]]:
        """Writer thread: the batch in one transaction; on failure, one transaction each."""
        state = self._state
        try:
            values = self._transaction(state, _apply, batch)
            return [(True, v) for v in values]
        except Exception:  # noqa: BLE001 - isolate the operation that failed
            state.rollback()
        outcomes = []
        for op in batch:
            try:
                outcomes.append((True, self._transaction(state, op.fn, *op.args)))
            except Exception as error:  # noqa: BLE001 - this one fails alone
                state.rollback()
                outcomes.append((False, self._failed(error)))
        return outcomes

    def _transaction(self, state: State, fn, *args):
        """``fn(state, *args)`` in one transaction, timed into the commit histogram."""
        start = time.perf_counter()
        state.begin()
        value = fn(state, *args)
        state.commit()
        elapsed = time.perf_counter() - start
        self.commits += 1
        self.commit_times.add(elapsed)
        return value

    # ------------------------------------------------------------------------- reading

    def read(self, fn, *args) -> asyncio.Future:
        """``fn(connection, *args)`` on a read-only connection of its own, in a thread of its
        own, within a budget of work (SearchTooBroad past it): long reads never hold up the
        writer. It sees what was committed. A ``:memory:`` store has no second connection, so
        there the read takes its turn in the writer."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the store is not open")
        if self.path == ":memory:":
            return self._submit(lambda state: search.bounded(state.db, fn, *args))
        if self._reader is None:
            self._reader = concurrent.futures.ThreadPoolExecutor(1, "store-reader")
        return asyncio.wrap_future(self._reader.submit(self._read, fn, args), loop=loop)

    def _read(self, fn, args):
        """Reader thread: open the connection the first time, then run ``fn``."""
        if self._reader_db is None:
            uri = Path(self.path).absolute().as_uri() + "?mode=ro"
            self._reader_db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._reader_db.execute("PRAGMA busy_timeout=10000")
        return search.bounded(self._reader_db, fn, *args)

    def _close_reader(self) -> None:
        if self._reader_db is not None:
            self._reader_db.close()
            self._reader_db = None

    def query(self, statement: str, parameters: tuple = ()) -> asyncio.Future:
        """Rows of an SQL statement, run by the writer in its own turn among the other
        operations (for tests and tools that look inside the store, or change it as a test
        needs)."""
        return self._submit(_query, statement, parameters)

    def layout(self) -> asyncio.Future:
        return self._submit(schema.layout)

    def insert_rows(self, table: str, columns: tuple[str, ...],
                    rows: list[tuple]) -> asyncio.Future:
        return self._submit(_insert_rows, table, columns, rows)

    async def continue_ids(self) -> None:
        """Nothing to do: SQLite gives a new row the id after the highest stored."""

    def writable_snapshot(self) -> tuple[bool, str]:
        """(True, "") while the store can write; else (False, why not)."""
        reason = self.write_error
        return reason is None, reason or ""

    def size_snapshot(self) -> int:
        """Bytes of the store on disk: the file and its write-ahead log (0 in memory)."""
        total = 0
        for path in (self.path, self.path + "-wal"):
            try:
                total += os.path.getsize(path)
            except OSError:
                pass
        return total


# Operations over a list of items with one result per item: between two other operations,
# every one of a kind with the same other arguments runs as one call (SUBMIT outcomes before
# receipts, so that a receipt finds its segment rather than being held and matched after),
# and the results are handed back op by op. Other operations run in their place in the order
# they came, so a read sees every write queued before it.
_MERGEABLE = (sql.record_submits, receipts_sql.record_receipts, receipts_sql.record_mo_parts)


def _apply(state, batch: list[Op]) -> list:
    values: list = [None] * len(batch)
    groups: dict[tuple, list[int]] = {}
    for i, op in enumerate(batch):
        if op.fn in _MERGEABLE:
            groups.setdefault((op.fn, op.args[1:]), []).append(i)
            continue
        _apply_merged(state, batch, groups, values)
        values[i] = op.fn(state, *op.args)
    _apply_merged(state, batch, groups, values)
    return values


def _apply_merged(state, batch: list[Op], groups: dict[tuple, list[int]], values: list) -> None:
    for (fn, rest), indexes in sorted(groups.items(), key=lambda g: _MERGEABLE.index(g[0][0])):
        merged = fn(state, [item for i in indexes for item in batch[i].args[0]], *rest)
        start = 0
        for i in indexes:
            size = len(batch[i].args[0])
            values[i] = merged[start:start + size]
            start += size
    groups.clear()


def _insert_rows(state: State, table: str, columns: tuple[str, ...],
                 rows: list[tuple]) -> None:
    names, marks = ", ".join(f'"{c}"' for c in columns), ", ".join("?" * len(columns))
    state.db.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)


def _query(state: State, statement: str, parameters: tuple) -> list[tuple]:
    return state.db.execute(statement, parameters).fetchall()


def _post(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
    """Writer thread: run ``callback(*args)`` on the event loop (nothing, once it is closed:
    then no one waits for the outcome, and what was committed stays committed)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        log.debug("the event loop closed before the store's outcomes reached it")


def _resolve(batch: list[Op], outcomes: list[tuple[bool, object]]) -> None:
    """Event loop: hand a committed batch's outcomes to the operations' futures."""
    for op, (ok, value) in zip(batch, outcomes):
        _settle_future(op.future, ok, value)


def _settle_future(future: asyncio.Future, ok: bool, value) -> None:
    if future.done():                     # the caller gave up waiting: nothing to tell
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
