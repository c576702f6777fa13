"""The shared store: ``PostgresStore``, the store's operations on the engine (``engine``: the
queue, the writer thread with group commit, reconnection), as ``gateway.store.sqlite.writer`` is
for SQLite. Every operation but the console's searches is queued for the writer, so a read sees
every write queued before it; the searches run on a read-only connection of their own
(``read``), so that a long one never holds up a write.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..interface import (
    URGENT,
    MoMessage,
    MoPart,
    NewMessage,
    Receipt,
    SegmentResult,
    Store,
    StoreUnavailable,
)
from ..lanes import PIPELINE
from . import api as api_sql
from . import console as console_sql
from . import messages as sql
from . import receipts as receipts_sql
from . import retention, schema, search
from . import users as users_sql
from .cluster import ClusterSession
from .engine import CONNECTION_ERRORS, Engine


class PostgresStore(Engine, Store):
    """``Store`` on a PostgreSQL database named by a ``postgresql://user@host:port/db`` URL
    (libpq's form, query parameters such as ``sslmode`` included); ``password`` is given apart
    so that the URL can be shown. Without one, asyncpg looks where libpq does (PGPASSWORD,
    ~/.pgpass)."""

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
    # Each returns the queued operation's future: await it, or add a done callback.

    def accept(self, messages: list[NewMessage], now: float) -> asyncio.Future:
        return self._submit(sql.accept, messages, now, urgent=_urgent(messages),
                            rows=len(messages))

    def fetch_pending(self, channel: str, after: Mapping[int, int], limit: int,
                      now: float) -> asyncio.Future:
        return self._submit(sql.fetch_pending, channel, after, limit, now,
                            urgent=set(after) == {URGENT}, lane=PIPELINE)

    def defer(self, message_id: int, until: float) -> asyncio.Future:
        return self._submit(sql.defer, message_id, until, lane=PIPELINE)

    def release_claims(self, message_ids: list[int]) -> asyncio.Future:
        return self._submit(sql.release_claims, message_ids, lane=PIPELINE)

    def record_submits(self, results: list[SegmentResult], provider: str) -> asyncio.Future:
        return self._submit(sql.record_submits, results, provider, lane=PIPELINE)

    def record_receipts(self, receipts: list[Receipt]) -> asyncio.Future:
        return self._submit(receipts_sql.record_receipts, receipts, lane=PIPELINE)

    def record_mo_parts(self, parts: list[MoPart]) -> asyncio.Future:
        return self._submit(receipts_sql.record_mo_parts, parts, lane=PIPELINE)

    def record_mo_message(self, message: MoMessage, apps: tuple[str, ...] = ()) -> asyncio.Future:
        return self._submit(receipts_sql.record_mo_message, message, apps)

    def unassembled_mo_parts(self) -> asyncio.Future:
        return self._submit(receipts_sql.unassembled_mo_parts)

    def loose_mo_parts(self, channel: str, src_terminal_id: str) -> asyncio.Future:
        return self._submit(receipts_sql.loose_mo_parts, channel, src_terminal_id)

    def expire_reports(self, now: float, timeout: float) -> asyncio.Future:
        return self._submit(receipts_sql.expire_reports, now, timeout)

    def expire_unmatched_receipts(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(retention.expire_unmatched, before, after, limit)

    def prune_messages(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(retention.prune_messages, before, after, limit)

    def prune_mo(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(retention.prune_mo, before, after, limit)

    def forget_idempotency_keys(self, before: float, after: int, limit: int) -> asyncio.Future:
        return self._submit(retention.forget_idempotency_keys, before, after, limit)

    def message(self, message_id: int) -> asyncio.Future:
        return self._submit(sql.message_view, message_id)

    def mo_view(self, mo_id: int) -> asyncio.Future:
        return self._submit(sql.mo_view, mo_id)

    async def status_counts(self) -> dict[str, int]:
        return dict(self._state.counts)

    async def unmatched_receipts(self) -> int:
        return self._state.unmatched

    def due_callbacks(self, now: float, limit: int) -> asyncio.Future:
        return self._submit(sql.due_callbacks, now, limit)

    def callback_done(self, entry_id: int, delivered: bool, now: float,
                      next_attempt_at: float | None, error: str | None) -> asyncio.Future:
        return self._submit(sql.callback_done, entry_id, delivered, now, next_attempt_at, error)

    def hold_callback(self, entry_id: int, until: float, reason: str) -> asyncio.Future:
        return self._submit(sql.hold_callback, entry_id, until, reason)

    def pending_callbacks(self) -> asyncio.Future:
        return self._submit(sql.pending_callbacks)

    def queue_status_callbacks_for(self, apps) -> None:
        if self._state is None:
            raise RuntimeError("the store is not open")
        self._state.status_callbacks = None if apps is None else frozenset(apps)

    # The API's records (gateway.store.postgres.api).

    def accept_request(self, request, now: float) -> asyncio.Future:
        return self._submit(api_sql.accept_request, request, now,
                            urgent=_urgent(request.messages),
                            rows=len(request.messages) + len(request.refused))

    def verify_code(self, app: str, message_id: int, code: str, now: float,
                    max_attempts: int = 5) -> asyncio.Future:
        return self._submit(api_sql.verify_code, app, message_id, code, now, max_attempts)

    def unsubscribe(self, mobile: str, now: float, channel: str) -> asyncio.Future:
        return self._submit(api_sql.unsubscribe, mobile, now, channel)

    def unsubscribed(self) -> asyncio.Future:
        return self._submit(api_sql.unsubscribed)

    def create_template(self, values: dict, first_id: int, now: float) -> asyncio.Future:
        return self._submit(api_sql.create_template, values, first_id, now)

    def update_template(self, template_id: int, values: dict, now: float) -> asyncio.Future:
        return self._submit(api_sql.update_template, template_id, values, now)

    def delete_template(self, template_id: int) -> asyncio.Future:
        return self._submit(api_sql.delete_template, template_id)

    def templates(self) -> asyncio.Future:
        return self._submit(api_sql.templates)

    def create_signature(self, app: str, sign: str, images: list, status: int, now: float,
                         type: int | None = None, remark: str | None = None) -> asyncio.Future:
        return self._submit(api_sql.create_signature, app, sign, images, status, now, type,
                            remark)

    def update_signature(self, sign_id: int, sign: str, images: list, status: int, now: float,
                         type: int | None = None, remark: str | None = None) -> asyncio.Future:
        return self._submit(api_sql.update_signature, sign_id, sign, images, status, now, type,
                            remark)

    def set_signature_status(self, sign_id: int, status: int, now: float) -> asyncio.Future:
        return self._submit(api_sql.set_signature_status, sign_id, status, now)

    def delete_signature(self, sign_id: int) -> asyncio.Future:
        return self._submit(api_sql.delete_signature, sign_id)

    def signatures(self) -> asyncio.Future:
        return self._submit(api_sql.signatures)

    # The apps' users (gateway.store.postgres.users).

    def save_users(self, app: str, users: list[tuple[str, dict[str, str]]], replace: bool,
                   max_users: int, now: float) -> asyncio.Future:
        return self._submit(users_sql.save_users, app, users, replace, max_users, now)

    def user(self, app: str, userid: str) -> asyncio.Future:
        return self._submit(users_sql.user, app, userid)

    def delete_user(self, app: str, userid: str, note=None, now: float = 0.0) -> asyncio.Future:
        return self._submit(users_sql.delete_user, app, userid, note, now)

    def user_numbers(self, app: str, userids: list[str], channel: str) -> asyncio.Future:
        return self._submit(users_sql.user_numbers, app, userids, channel)

    def find_users(self, app: str, prefix: str, after: str | None,
                   limit: int) -> asyncio.Future:
        return self.read(users_sql.find_users, app, prefix, after, limit)

    def user_count(self, app: str) -> asyncio.Future:
        return self._submit(users_sql.user_count, app)

    # The operator's console (gateway.store.postgres.console): each change with its audit note.

    def apps(self) -> asyncio.Future:
        return self._submit(console_sql.apps)

    def create_app(self, app, note) -> asyncio.Future:
        return self._submit(console_sql.create_app, app, note)

    def update_app_settings(self, name: str, settings: dict, note, now: float) -> asyncio.Future:
        return self._submit(console_sql.update_app_settings, name, settings, note, now)

    def rotate_app_secret(self, name: str, secret: str, previous_until: float, note,
                          now: float) -> asyncio.Future:
        return self._submit(console_sql.rotate_app_secret, name, secret, previous_until, note,
                            now)

    def console_user(self, name: str) -> asyncio.Future:
        return self._submit(console_sql.console_user, name)

    def console_users(self) -> asyncio.Future:
        return self._submit(console_sql.console_users)

    def put_console_user(self, user, note, now: float) -> asyncio.Future:
        return self._submit(console_sql.put_console_user, user, note, now)

    def remove_console_user(self, name: str, note, now: float) -> asyncio.Future:
        return self._submit(console_sql.remove_console_user, name, note, now)

    def create_session(self, session_id: str, user: str, note, now: float, idle: float,
                       lifetime: float) -> asyncio.Future:
        return self._submit(console_sql.create_session, session_id, user, note, now, idle,
                            lifetime)

    def session(self, session_id: str) -> asyncio.Future:
        return self._submit(console_sql.session, session_id)

    def touch_session(self, session_id: str, now: float) -> asyncio.Future:
        return self._submit(console_sql.touch_session, session_id, now)

    def end_session(self, session_id: str, note, now: float) -> asyncio.Future:
        return self._submit(console_sql.end_session, session_id, note, now)

    def console_key(self, name: str, candidate: str) -> asyncio.Future:
        return self._submit(console_sql.console_key, name, candidate)

    def review(self, kind: str, item: int, status: int, reason: str, note,
               now: float) -> asyncio.Future:
        return self._submit(console_sql.review, kind, item, status, reason, note, now)

    def last_reviews(self) -> asyncio.Future:
        return self._submit(console_sql.last_reviews)

    def signature_images(self, sign_id: int) -> asyncio.Future:
        return self._submit(console_sql.signature_images, sign_id)

    def signature_image(self, sign_id: int, slot: int) -> asyncio.Future:
        return self._submit(console_sql.signature_image, sign_id, slot)

    def audit(self, note, now: float) -> asyncio.Future:
        return self._submit(console_sql.audit, note, now)

    def audit_page(self, before_id: int | None, limit: int) -> asyncio.Future:
        return self._submit(console_sql.audit_page, before_id, limit)

    # The console's searches (gateway.store.postgres.search), off the writer's connection.

    def find_messages(self, query) -> asyncio.Future:
        return self.read(search.find_messages, query)

    def message_receipts(self, view) -> asyncio.Future:
        return self.read(search.message_receipts, view)

    def message_callbacks(self, view) -> asyncio.Future:
        return self.read(search.message_callbacks, view)

    def waiting_callbacks(self) -> asyncio.Future:
        return self.read(search.pending_callbacks)

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

    def counts_snapshot(self) -> Counter:
        """Messages by status, as of the last commit (no query; for metrics scrapes)."""
        return Counter(self._state.counts) if self._state else Counter()

    def unmatched_snapshot(self) -> int:
        """Receipts waiting for a segment, as of the last commit (no query)."""
        return self._state.unmatched if self._state else 0

    def size_snapshot(self) -> int:
        """Bytes of the store's tables with their indexes and TOAST (pg_total_relation_size,
        summed), as measured at most ``size_interval`` seconds ago (no query). The WAL and
        what else the server holds are not counted."""
        return self.size

    def commit_snapshot(self) -> tuple[tuple[float, ...], list[int], float]:
        """Transactions by duration: (bucket bounds, count per bucket and +Inf, seconds)."""
        return self.commit_times.snapshot()


def display_name(url: str) -> str:
    """The database as operators name it, without any password: user@host:port/database."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.username or ''}@{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _urgent(messages) -> bool:
    """Whether storing ``messages`` takes the urgent lane: one of them is urgent."""
    return any(m.priority == URGENT for m in messages)


_MARK = re.compile(r"\?")


def _numbered(statement: str) -> str:
    """SQLite's ``?`` parameters as PostgreSQL's ``$1, $2, ...``."""
    count = iter(range(1, 1 << 16))
    return _MARK.sub(lambda _: f"${next(count)}", statement)


async def _insert_rows(state: sql.State, table: str, columns: tuple[str, ...],
                       rows: list[tuple]) -> None:
    await state.db.copy_records_to_table(table, records=rows, columns=list(columns))


async def _query(state: sql.State, statement: str, parameters: tuple) -> list[tuple]:
    return [tuple(row) for row in await state.db.fetch(statement, *parameters)]


