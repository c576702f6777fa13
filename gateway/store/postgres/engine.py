"""The shared store's engine: PostgreSQL through asyncpg, written by one thread with group
commit (``PostgresStore``, in ``writer``, puts the store's operations on it).

The same engine as ``gateway.store.sqlite.writer``: operations are queued in lanes; the writer
thread takes what a lane holds (up to ``batch_limit``), runs it in one transaction on its one
connection and, after COMMIT, hands the batch's outcomes back to the event loop in one call,
which resolves their futures. Operations wait in the lanes of ``gateway.store.lanes``: those on
urgent messages alone (accepting a verification code, fetching urgent messages) are taken
first, so that they wait only for the transaction at the server, never behind the bulk work
queued before them; the pipeline's (SUBMIT outcomes, reports, fetches) and the rest take turns,
a bounded amount of bulk work a transaction. The writer thread runs an event loop of its own
for asyncpg, so a transaction's round trips to the server never wait for the daemon's busy loop
to come round, and what arrives while a transaction is at the server waits for the next one:
the busier the gateway, the more each commit carries. Reads go through the same lanes, so they
see every write queued before them in their lane and the pipeline's. If a transaction fails,
each of its operations is retried in a transaction of its own, so one bad operation fails
alone. A commit is durable when PostgreSQL says so: the store insists on ``synchronous_commit``
at least ``local`` (WAL flushed to the server's disk), and keeps a stronger setting
(``remote_apply``, a synchronous standby) when the server has one.

When the store cannot write (see ``health``, whose ``Writability`` is the engine's part that
deals with it: the database cannot be reached, the session is lost, the server's disk is full or
it is read-only), the operations it cannot do fail with ``StoreUnavailable`` (all of them, at
once, while there is no session; those that write, while the server refuses them), and the store
says why (``writable_snapshot``, for /readyz; never with the password) until a probe, at once
and then every ``probe_interval`` seconds on a connection of its own, succeeds; when the session
was lost, the probe's connection takes its place, and the facts kept in memory are re-read on
it. A transaction the server does not answer within ``answer_timeout`` seconds gives the session
up: a server that stopped answering (a network that drops packets, a frozen host) fails
operations instead of holding them. Every ``size_interval`` seconds (SIZE_INTERVAL) the writer
measures the store's size (``size_snapshot``), which also finds out, when the gateway is idle,
that the server stopped answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from urllib.parse import urlsplit

import asyncpg

from ..lanes import BULK, URGENT_LANE, Lanes, Op
from ..records import StoreError, StoreUnavailable
from ..timing import CommitTimes
from . import api as api_sql
from . import cluster, health, retention, schema
from . import console as console_sql
from . import messages as sql
from . import receipts as receipts_sql
from . import users as users_sql
from .health import CONNECTION_ERRORS, UNREACHABLE, Writability, _close, _text
from .state import State

log = logging.getLogger("cmpp_gateway.store")

SCHEMAS = (schema.SCHEMA, api_sql.SCHEMA, users_sql.SCHEMA, console_sql.SCHEMA,
           retention.SCHEMA, health.SCHEMA, cluster.SCHEMA)

# Every statement of the store reaches its rows by key (a batch's keys given as arrays), and
# every such key has an index. The store's session tells the planner so: never a whole-table
# scan, hash or merge join where an index leads to the rows. Left to its estimates, the
# planner chooses them while a table is young and has no statistics (a new store, its first
# minutes), and a prepared statement keeps that plan: a batch then took milliseconds instead
# of a fraction of one (measured: the database's CPU a message fell from about 320 to 80 us).
# A table scan is still made where no index applies (counting messages by status).
PLANNER_SETTINGS = {"enable_seqscan": "off", "enable_hashjoin": "off",
                    "enable_mergejoin": "off"}

# The store's size: its tables with their indexes and TOAST (pg_total_relation_size), those of
# the schema its tables are in. The WAL and the server's other databases are not the store's.
SIZE = ("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
        "WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace")
SIZE_INTERVAL = 10.0              # seconds between two measurements


class Engine(Writability):
    """The queue, the writer thread and its connection, on a PostgreSQL database named by a
    ``postgresql://user@host:port/db`` URL (libpq's form, query parameters such as
    ``sslmode`` included); ``password`` is given apart so that the URL can be shown. Without
    one, asyncpg looks where libpq does (PGPASSWORD, ~/.pgpass). ``name`` is the database as
    messages show it (``display_name``)."""

    def __init__(self, url: str, name: str, password: str | None, *, batch_limit: int,
                 connect_timeout: float, answer_timeout: float, probe_interval: float,
                 application_name: str) -> None:
        self.url = url
        self.name = name
        self.batch_limit = batch_limit
        self.connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self.probe_interval = probe_interval
        self.application_name = application_name     # as pg_stat_activity shows the session
        self._password = password
        self._secrets = [s for s in (password, urlsplit(url).password) if s]
        self._state: State | None = None
        self._lanes = Lanes(batch_limit)              # the operations; appends are thread-safe
        self._loop: asyncio.AbstractEventLoop | None = None         # the daemon's
        self._writer: threading.Thread | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None                     # the writer loop's
        self._idle = False            # the writer waits for _wake: a submit must set it
        self._closing = False
        self._stopped: asyncio.Future | None = None
        self._prober: asyncio.Task | None = None    # the writer loop's, while not writable
        self._measure_at = 0.0
        self.size_interval = SIZE_INTERVAL
        self.commits = 0              # transactions run, for metrics and tests
        self.commit_times = CommitTimes()           # for cmpp_store_commit_seconds
        self.size = 0                 # bytes of the store's tables and indexes, last measured
        self.write_error: str | None = None         # why the store cannot write; None: it can

    # ------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start the writer. Raises
        StoreUnavailable when the database cannot be reached (UNREACHABLE: try again later),
        StoreError when it refuses this gateway (a wrong password, no such database) or is not
        a store this version can use. A database that cannot write (its disk is full) opens,
        not writable."""
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
        """A new session, made within ``connect_timeout`` (TimeoutError past it). Raises what
        asyncpg raises."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                db = await asyncpg.connect(self.url, password=self._password,
                                           server_settings={"application_name":
                                                            self.application_name,
                                                            **PLANNER_SETTINGS})
                try:
                    if await db.fetchval("SHOW synchronous_commit") == "off":
                        await db.execute("SET synchronous_commit = local")   # durable
                except BaseException:
                    db.terminate()
                    raise
        except TimeoutError:
            raise TimeoutError(f"no answer within {self.connect_timeout:g} s") from None
        return db

    async def _open_database(self) -> State:
        try:
            db = await self._connect()
        except CONNECTION_ERRORS as error:
            if isinstance(error, UNREACHABLE) and not isinstance(error, ssl.SSLError):
                raise StoreUnavailable(self._redacted(
                    f"{self.name}: the database cannot be reached: {_text(error)}")) from None
            raise StoreError(self._redacted(f"{self.name}: cannot use the database: "
                                            f"{_text(error)}")) from None
        try:
            await schema.migrate(db, self.name, SCHEMAS)
            state = State(db)
            await state.reload()
        except asyncpg.PostgresError as error:     # e.g. no right to create tables
            await db.close()
            raise StoreError(self._redacted(f"{self.name}: cannot set up the store's tables: "
                                            f"{error}")) from None
        except BaseException:
            await db.close()
            raise
        return state

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
        """Open the database (and find out whether it can write), then commit batches until
        close() says stop and the queue is empty."""
        try:
            state = await self._open_database()
        except BaseException as error:  # noqa: BLE001 - reported to open()'s caller
            _post(loop, _settle_future, opened, False, error)
            return
        self._state, self._wake = state, asyncio.Event()
        self._writer_loop = asyncio.get_running_loop()
        state.db.add_termination_listener(self._lost)
        await self._first_probe()
        _post(loop, _settle_future, opened, True, state)
        try:
            await self._commit_batches(loop)
        finally:
            self._writer_loop = None
            if self._prober is not None:
                self._prober.cancel()
                await asyncio.gather(self._prober, return_exceptions=True)
            await _close(self._state.db, self.answer_timeout)

    async def _commit_batches(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._lanes or not self._closing:
            if time.monotonic() >= self._measure_at:
                await self._measure()
            batch = self._lanes.next_batch()
            if not batch:
                await self._wait()
                continue
            try:
                outcomes = await self._run(batch)
            except Exception as error:  # noqa: BLE001 - e.g. a rollback that failed
                outcomes = [(False, error)] * len(batch)
            _post(loop, _resolve, batch, outcomes)

    async def _wait(self) -> None:
        """Writer: wait for an operation or close(), at most until the next measurement."""
        self._wake.clear()
        self._idle = True
        if not (self._lanes or self._closing):  # else a submit came meanwhile
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._measure_at - time.monotonic())):
                    await self._wake.wait()
        self._idle = False

    async def _run(self, batch: list[Op]) -> list[tuple[bool, object]]:
        """The batch in one transaction; on failure, one transaction each. While the session
        is lost, every operation fails at once (the prober connects again)."""
        if self._state.db.is_closed():
            self._lost(self._state.db)
            return self._unavailable(batch)
        try:
            values = await self._bounded(batch, _apply)
            return [(True, v) for v in values]
        except Exception as error:  # noqa: BLE001 - isolate the operation that failed
            if self._state.db.is_closed():
                return [(False, self._failed(error))] * len(batch)
        outcomes = []
        for op in batch:
            try:
                outcomes.append((True, await self._bounded([op], _apply_one)))
            except Exception as error:  # noqa: BLE001 - this one fails alone
                outcomes.append((False, self._failed(error)))
                if self._state.db.is_closed():
                    return outcomes + self._unavailable(batch[len(outcomes):])
        return outcomes

    async def _bounded(self, batch: list[Op], apply):
        """``_transaction`` answered within ``answer_timeout``; past it the session is given
        up (StoreUnavailable: maybe committed, when COMMIT was what went unanswered)."""
        try:
            async with asyncio.timeout(self.answer_timeout):
                return await self._transaction(batch, apply)
        except TimeoutError:
            self._give_up(self._state.db)
            raise StoreUnavailable(self.write_error) from None

    async def _transaction(self, batch: list[Op], apply):
        """``apply(state, batch)`` between BEGIN (with the batch's Msg_Id locks, in the same
        round trip) and COMMIT; ROLLBACK when it fails (not when it was cancelled: then the
        session is given up)."""
        state = self._state
        state.begin()
        start = time.perf_counter()
        try:
            await state.db.execute(sql.begin([key for op in batch
                                              for key in sql.lock_keys(op.fn, op.args)]))
            value = await apply(state, batch)
            await state.db.execute("COMMIT")
        except Exception:
            if not state.db.is_closed():
                await state.db.execute("ROLLBACK")
            raise
        state.commit()
        self.commits += 1
        self.commit_times.add(time.perf_counter() - start)
        return value

    def _unavailable(self, batch: list[Op]) -> list[tuple[bool, object]]:
        """Outcomes for a batch the database did not take."""
        error = StoreUnavailable(self.write_error or f"the store {self.name} cannot be reached")
        return [(False, error)] * len(batch)

    async def _measure(self) -> None:
        """Writer: the store's size, into ``size`` (kept as it was while it cannot be
        measured). A server that does not answer loses the session, as for a transaction."""
        self._measure_at = time.monotonic() + self.size_interval
        db = self._state.db
        if db.is_closed():
            return
        try:
            async with asyncio.timeout(self.answer_timeout):
                self.size = await db.fetchval(SIZE)
        except TimeoutError:
            self._give_up(db)
        except CONNECTION_ERRORS as error:
            log.debug("store %s: size not measured: %s", self.name, _text(error))


# Operations over a list of items with one result per item: between two other operations,
# every one of a kind with the same other arguments runs as one call (SUBMIT outcomes before
# receipts, so that a receipt finds its segment rather than being held and matched after),
# and the results are handed back op by op. Other operations run in their place in the order
# they came, so a read sees every write queued before it.
_MERGEABLE = (sql.record_submits, receipts_sql.record_receipts, receipts_sql.record_mo_parts)


async def _apply_one(state, batch: list[Op]):
    op = batch[0]
    return await op.fn(state, *op.args)


async def _apply(state, batch: list[Op]) -> list:
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


async def _apply_merged(state, batch: list[Op], groups: dict[tuple, list[int]],
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
