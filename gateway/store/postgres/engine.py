"""The shared store's engine: PostgreSQL through asyncpg, written by one thread with group
commit (``PostgresStore``, in ``writer``, puts the store's operations on it).

The same engine as ``gateway.store.sqlite.writer`` operations go into a queue; the writer
thread takes everything queued (up to ``batch_limit``), runs it in one transaction on its one
connection and, after COMMIT, hands the batch's outcomes back to the event loop in one call,
which resolves their futures. The writer thread runs an event loop of its own for asyncpg, so
a transaction's round trips to the server never wait for the daemon's busy loop to come round,
and what arrives while a transaction is at the server waits for the next one: the busier the
gateway, the more each commit carries. Reads go through the same queue, so they see every
write queued before them. If a transaction fails, each of its operations is retried in a
transaction of its own, so one bad operation fails alone. A commit is durable when PostgreSQL
says so: the store insists on ``synchronous_commit`` at least ``local`` (WAL flushed to the
server's disk), and keeps a stronger setting (``remote_apply``, a synchronous standby) when the
server has one.

A connection that breaks fails the operations of its batch with ``StoreUnavailable``; the next
batch connects again (at most once a second) and re-reads the facts kept in memory.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time

import asyncpg

from ..interface import StoreError, StoreUnavailable
from . import api as api_sql
from . import cluster
from . import console as console_sql
from . import messages as sql
from . import receipts as receipts_sql
from . import schema
from . import users as users_sql

log = logging.getLogger("cmpp_gateway.store")

SCHEMAS = (schema.SCHEMA, api_sql.SCHEMA, users_sql.SCHEMA, console_sql.SCHEMA, cluster.SCHEMA)
RECONNECT_INTERVAL = 1.0          # seconds between two tries to reach the database again

# Every statement of the store reaches its rows by key (a batch's keys given as arrays), and
# every such key has an index. The store's session tells the planner so: never a whole-table
# scan, hash or merge join where an index leads to the rows. Left to its estimates, the
# planner chooses them while a table is young and has no statistics (a new store, its first
# minutes), and a prepared statement keeps that plan: a batch then took milliseconds instead
# of a fraction of one (measured: the database's CPU a message fell from about 320 to 80 us).
# A table scan is still made where no index applies (counting messages by status).
PLANNER_SETTINGS = {"enable_seqscan": "off", "enable_hashjoin": "off",
                    "enable_mergejoin": "off"}
CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class _Op:
    __slots__ = ("fn", "args", "future")

    def __init__(self, fn, args, future):
        self.fn, self.args, self.future = fn, args, future


class Engine:
    """The queue, the writer thread and its connection, on a PostgreSQL database named by a
    ``postgresql://user@host:port/db`` URL (libpq's form, query parameters such as
    ``sslmode`` included); ``password`` is given apart so that the URL can be shown. Without
    one, asyncpg looks where libpq does (PGPASSWORD, ~/.pgpass). ``name`` is the database as
    messages show it (``display_name``)."""

    def __init__(self, url: str, name: str, password: str | None, batch_limit: int,
                 connect_timeout: float, application_name: str) -> None:
        self.url = url
        self.name = name
        self.batch_limit = batch_limit
        self.connect_timeout = connect_timeout
        self.application_name = application_name     # as pg_stat_activity shows the session
        self._password = password
        self._state: sql.State | None = None
        self._inbox: collections.deque[_Op] = collections.deque()   # appends are thread-safe
        self._loop: asyncio.AbstractEventLoop | None = None         # the daemon's
        self._writer: threading.Thread | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None                     # the writer loop's
        self._idle = False            # the writer waits for _wake: a submit must set it
        self._closing = False
        self._stopped: asyncio.Future | None = None
        self._next_connect = 0.0
        self.commits = 0              # transactions run, for metrics and tests

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start the writer. Raises StoreError when
        the database cannot be reached or is not a store this version can use."""
        loop = asyncio.get_running_loop()
        opened, self._stopped = loop.create_future(), loop.create_future()
        self._closing = False
        self._writer = threading.Thread(target=self._write, args=(loop, opened),
                                        name="store-writer", daemon=True)
        self._writer.start()
        try:
            self._state = await opened
        except BaseException:
            self._stop_writer()                     # if it did open, it closes again
            await asyncio.shield(self._stopped)
            self._writer.join()
            self._writer = None
            raise
        self._loop = loop

    async def close(self) -> None:
        """Finish every queued operation (and the batch being committed), then close."""
        if self._loop is None:
            return
        self._loop = None                           # no new operations from here on
        self._stop_writer()
        await self._stopped
        self._writer.join()
        self._writer = None

    def _stop_writer(self) -> None:
        self._closing = True
        writer_loop = self._writer_loop
        if writer_loop is not None:
            try:
                writer_loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:                    # its loop has ended already
                pass

    async def _connect(self):
        db = await asyncpg.connect(self.url, password=self._password,
                                   timeout=self.connect_timeout,
                                   server_settings={"application_name": self.application_name,
                                                    **PLANNER_SETTINGS})
        if await db.fetchval("SHOW synchronous_commit") == "off":
            await db.execute("SET synchronous_commit = local")    # durable at COMMIT
        return db

    async def _open_database(self) -> sql.State:
        try:
            db = await self._connect()
        except CONNECTION_ERRORS as error:
            raise StoreError(f"{self.name}: cannot use the database: {error}") from None
        try:
            await schema.migrate(db, self.name, SCHEMAS, cluster.COMPLETE)
            state = sql.State(db)
            await state.reload()
        except asyncpg.PostgresError as error:     # e.g. no right to create tables
            await db.close()
            raise StoreError(f"{self.name}: cannot set up the store's tables: {error}") from None
        except BaseException:
            await db.close()
            raise
        return state

    async def _connected(self) -> bool:
        """Writer: the connection is up, or was just made again; False when the database
        cannot be reached (tried at most once a RECONNECT_INTERVAL)."""
        state = self._state
        if not state.db.is_closed():
            return True
        now = time.monotonic()
        if now < self._next_connect:
            return False
        self._next_connect = now + RECONNECT_INTERVAL
        try:
            state.db = await self._connect()
            await state.reload()
        except CONNECTION_ERRORS as error:
            log.warning("store %s still unreachable: %s", self.name, error)
            if not state.db.is_closed():
                await state.db.close()
            return False
        log.warning("store %s reconnected", self.name)
        return True

    # ------------------------------------------------------------------------- the engine

    def _submit(self, fn, *args) -> asyncio.Future:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the store is not open")
        future = loop.create_future()
        self._inbox.append(_Op(fn, args, future))
        if self._idle:
            self._idle = False
            self._writer_loop.call_soon_threadsafe(self._wake.set)
        return future

    def _write(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future) -> None:
        """The writer thread: its own event loop, for as long as the store is open."""
        try:
            asyncio.run(self._serve(loop, opened))
        finally:
            _post(loop, _settle_future, self._stopped, True, None)

    async def _serve(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future) -> None:
        """Open the database, then commit batches until close() says stop and the queue is
        empty."""
        try:
            state = await self._open_database()
        except BaseException as error:  # noqa: BLE001 - reported to open()'s caller
            _post(loop, _settle_future, opened, False, error)
            return
        self._state, self._wake = state, asyncio.Event()
        self._writer_loop = asyncio.get_running_loop()
        _post(loop, _settle_future, opened, True, state)
        inbox = self._inbox
        try:
            while inbox or not self._closing:
                if not inbox:
                    self._wake.clear()
                    self._idle = True
                    if not inbox and not self._closing:      # else a submit came meanwhile
                        await self._wake.wait()
                    self._idle = False
                    continue
                batch = [inbox.popleft() for _ in range(min(len(inbox), self.batch_limit))]
                try:
                    outcomes = await self._run(batch)
                except Exception as error:  # noqa: BLE001 - e.g. a rollback that failed
                    outcomes = [(False, error)] * len(batch)
                _post(loop, _resolve, batch, outcomes)
        finally:
            self._writer_loop = None
            await state.db.close()

    async def _run(self, batch: list[_Op]) -> list[tuple[bool, object]]:
        """The batch in one transaction; on failure, one transaction each."""
        if not await self._connected():
            return self._unavailable(batch)
        try:
            values = await self._transaction(batch, _apply)
            return [(True, v) for v in values]
        except Exception:  # noqa: BLE001 - isolate the operation that failed
            if self._state.db.is_closed():
                return self._unavailable(batch)
        outcomes = []
        for op in batch:
            try:
                outcomes.append((True, await self._transaction([op], _apply_one)))
            except Exception as error:  # noqa: BLE001 - this one fails alone
                if self._state.db.is_closed():
                    return outcomes + self._unavailable(batch[len(outcomes):])
                outcomes.append((False, error))
        return outcomes

    async def _transaction(self, batch: list[_Op], apply):
        """``apply(state, batch)`` between BEGIN (with the batch's Msg_Id locks, in the same
        round trip) and COMMIT; ROLLBACK when it fails."""
        state = self._state
        state.begin()
        try:
            await state.db.execute(sql.begin([key for op in batch
                                              for key in sql.lock_keys(op.fn, op.args)]))
            value = await apply(state, batch)
            await state.db.execute("COMMIT")
        except BaseException:
            if not state.db.is_closed():
                await state.db.execute("ROLLBACK")
            raise
        state.commit()
        self.commits += 1
        return value

    def _unavailable(self, batch: list[_Op]) -> list[tuple[bool, object]]:
        """Outcomes for a batch the database did not take (or whose COMMIT went unanswered:
        then it may have been stored; an API client's retry with its Idempotency-Key finds
        out)."""
        error = StoreUnavailable(f"the store {self.name} cannot be reached")
        return [(False, error)] * len(batch)


# Operations over a list of items with one result per item: between two other operations,
# every one of a kind with the same other arguments runs as one call (SUBMIT outcomes before
# receipts, so that a receipt finds its segment rather than being held and matched after),
# and the results are handed back op by op. Other operations run in their place in the order
# they came, so a read sees every write queued before it.
_MERGEABLE = (sql.record_submits, receipts_sql.record_receipts, receipts_sql.record_mo_parts)


async def _apply_one(state, batch: list[_Op]):
    op = batch[0]
    return await op.fn(state, *op.args)


async def _apply(state, batch: list[_Op]) -> list:
    values: list = [None] * len(batch)
    groups: dict[tuple, list[int]] = {}
    for i, op in enumerate(batch):
        if op.fn in _MERGEABLE:
            groups.setdefault((op.fn, op.args[1:]), []).append(i)
            continue
        await _apply_merged(state, batch, groups, values)
        values[i] = await op.fn(state, *op.args)
    await _apply_merged(state, batch, groups, values)
    return values


async def _apply_merged(state, batch: list[_Op], groups: dict[tuple, list[int]],
                        values: list) -> None:
    for (fn, rest), indexes in sorted(groups.items(), key=lambda g: _MERGEABLE.index(g[0][0])):
        merged = await fn(state, [item for i in indexes for item in batch[i].args[0]], *rest)
        start = 0
        for i in indexes:
            size = len(batch[i].args[0])
            values[i] = merged[start:start + size]
            start += size
    groups.clear()


def _post(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
    """Writer thread: run ``callback(*args)`` on the daemon's event loop (nothing, once it is
    closed: then no one waits for the outcome, and what was committed stays committed)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        log.debug("the event loop closed before the store's outcomes reached it")


def _resolve(batch: list[_Op], outcomes: list[tuple[bool, object]]) -> None:
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
