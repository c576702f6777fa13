"""The shared store: ``PostgresStore``, the store's operations (``gateway.store.queued``, on
this package's SQL modules, and those of several gateways) on the engine (``engine``: the
queue, the writer thread with group commit, reconnection), as ``gateway.store.sqlite.writer``
is for SQLite. Every operation but the console's searches is queued for the writer, so a read sees
every write queued before it; the searches run on a read-only connection of their own
(``read``), so that a long one never holds up a write.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

from ..lanes import PIPELINE
from ..queued import QueuedStore
from ..records import StoreUnavailable
from . import api as api_sql
from . import console as console_sql
from . import messages as sql
from . import receipts as receipts_sql
from . import retention, schema, search
from . import users as users_sql
from .cluster import ClusterSession
from .engine import Engine
from .health import CONNECTION_ERRORS
from .state import State


class PostgresStore(Engine, QueuedStore):
    """``Store`` on a PostgreSQL database named by a ``postgresql://user@host:port/db`` URL
    (libpq's form, query parameters such as ``sslmode`` included); ``password`` is given apart
    so that the URL can be shown. Without one, asyncpg looks where libpq does (PGPASSWORD,
    ~/.pgpass)."""

    _messages, _receipts, _api, _users = sql, receipts_sql, api_sql, users_sql
    _console, _retention, _search = console_sql, retention, search

    def __init__(self, url: str, *, password: str | None = None, batch_limit: int = 4000,
                 connect_timeout: float = 10.0, answer_timeout: float = 10.0,
                 probe_interval: float = 1.0, application_name: str = "cmpp-gateway") -> None:
        """``answer_timeout``: seconds a transaction may wait for the server before the
        session is given up; ``probe_interval``: seconds between two probes while the store
        cannot write (engine)."""
        super().__init__(url, display_name(url), password, batch_limit=batch_limit,
                         connect_timeout=connect_timeout, answer_timeout=answer_timeout,
                         probe_interval=probe_interval, application_name=application_name)
        self._reader = None                         # the searches' connection, made at need
        self._reading: asyncio.Lock | None = None   # one search at a time on it

    async def close(self) -> None:
        """Finish every queued operation, close the writer and the reading connection."""
        await super().close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    # ------------------------------------------------------------------------- several gateways

    shared = True

    def cluster_session(self) -> ClusterSession:
        """This gateway's membership among those sharing the database (not joined yet)."""
        return ClusterSession(self.url, self._password, self.connect_timeout,
                              self.application_name)

    async def join_cluster(self, session: ClusterSession, channels: list[str]) -> bool:
        """Join (or join again after the session was lost) with ``session``: from here on
        this store claims the messages and callbacks it fetches for this gateway, under the
        session's id. False when that id is new (the claims of the old one, if any, are the
        survivors' now). Raises StoreUnavailable when the database cannot be reached."""
        try:
            kept = await session.join(channels)
        except CONNECTION_ERRORS as error:
            raise StoreUnavailable(f"the store {self.name} cannot be reached: {error}") from None
        self._state.instance = session.id
        return kept

    # ------------------------------------------------------------------------- operations
    # Those of several gateways; the others are QueuedStore's.

    def release_claims(self, message_ids: list[int]) -> asyncio.Future:
        return self._submit(sql.release_claims, message_ids, lane=PIPELINE)

    def release_claims_not_held(self, channel: str, held: list[int]) -> asyncio.Future:
        return self._submit(sql.release_claims_not_held, channel, held, lane=PIPELINE)

    def loose_mo_parts(self, channel: str, src_terminal_id: str) -> asyncio.Future:
        return self._submit(receipts_sql.loose_mo_parts, channel, src_terminal_id)

    # ------------------------------------------------------------------------- reading

    def read(self, fn, *args) -> asyncio.Future:
        """``await fn(connection, *args)`` on a read-only connection of its own (made at the
        first read, one read at a time), on the event loop, in a transaction whose statements
        the server cancels past search.TIMEOUT (SearchTooBroad): long reads never hold up the
        writer. It sees what was committed. StoreUnavailable when the database cannot be
        reached (the next read connects again)."""
        if self._loop is None:
            raise RuntimeError("the store is not open")
        return self._loop.create_task(self._read(fn, args))

    async def _read(self, fn, args):
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            try:
                if self._reader is None or self._reader.is_closed():
                    self._reader = None
                    self._reader = await self._connect()
                async with asyncio.timeout(search.TIMEOUT + self.answer_timeout):
                    return await search.bounded(self._reader, fn, *args)
            except CONNECTION_ERRORS as error:
                if isinstance(error, TimeoutError) and self._reader is not None:
                    self._reader.terminate()        # the server stopped answering
                    error = TimeoutError("no answer in time")
                elif self._reader is not None and not self._reader.is_closed():
                    raise                           # the read's own error
                raise StoreUnavailable(self._redacted(
                    f"the store {self.name} cannot be reached: {error}")) from None

    def query(self, statement: str, parameters: tuple = ()) -> asyncio.Future:
        """Rows (tuples) of an SQL statement, run by the writer in its own turn among the other
        operations (for tests and tools that look inside the store, or change it as a test
        needs). Parameters are written ``?`` as for SQLite, so that one text serves both."""
        return self._submit(_query, _numbered(statement), parameters)

    def layout(self) -> asyncio.Future:
        return self._submit(schema.layout)

    def insert_rows(self, table: str, columns: tuple[str, ...],
                    rows: list[tuple]) -> asyncio.Future:
        """As the interface says, with COPY (binary): the fastest way into PostgreSQL."""
        return self._submit(_insert_rows, table, columns, rows)

    async def continue_ids(self) -> None:
        """Make every generated id continue after the highest one stored (after copy-store
        wrote rows with their ids)."""
        await self._submit(schema.continue_ids)

    def size_snapshot(self) -> int:
        """Bytes of the store's tables with their indexes and TOAST (pg_total_relation_size,
        summed), as measured at most ``size_interval`` seconds ago (no query). The WAL and
        what else the server holds are not counted."""
        return self.size


def display_name(url: str) -> str:
    """The database as operators name it, without any password: user@host:port/database."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.username or ''}@{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


_MARK = re.compile(r"\?")


def _numbered(statement: str) -> str:
    """SQLite's ``?`` parameters as PostgreSQL's ``$1, $2, ...``."""
    count = iter(range(1, 1 << 16))
    return _MARK.sub(lambda _: f"${next(count)}", statement)


async def _insert_rows(state: State, table: str, columns: tuple[str, ...],
                       rows: list[tuple]) -> None:
    await state.db.copy_records_to_table(table, records=rows, columns=list(columns))


async def _query(state: State, statement: str, parameters: tuple) -> list[tuple]:
    return [tuple(row) for row in await state.db.fetch(statement, *parameters)]


