"""The console's searches, as ``gateway.store.sqlite.search`` is for SQLite: messages by id,
app, number, time and status; a message's status reports and callbacks; the callbacks still
waiting.

These run on a read-only connection of their own (``PostgresStore.read``), never on the
writer's, so a long search does not hold up a write. The store keeps no index for them on
purpose (every index costs the hot path): ids grow with time in the messages, receipts and
outbox tables, so a time becomes an id range by bisection (``first_id_at``), and the rest is
read within that range. A search that would still read too much stops with SearchTooBroad:
a message search reads at most BUDGET messages (counted by the query itself, so the limit is
the same on any machine), and every read is cancelled by the server after TIMEOUT seconds.
"""

from __future__ import annotations

import asyncpg

from ..console import (
    CallbackRow,
    MessageQuery,
    MessageRow,
    PendingCallbacks,
    ReceiptRow,
    SearchTooBroad,
)
from ..records import MessageView, to_signed, to_unsigned

BUDGET = 500_000               # messages one search may read
TIMEOUT = 5.0                  # seconds any one read may take at the server
SLACK = 60.0                   # seconds: times written in one batch may be out of id order
TOO_BROAD = "this search reads too much of the store; give a time range, an app or a status"


async def bounded(db, fn, *args):
    """``await fn(db, *args)`` in a read-only transaction whose statements the server cancels
    past TIMEOUT; SearchTooBroad when it does."""
    try:
        async with db.transaction(readonly=True):
            await db.execute(f"SET LOCAL statement_timeout = {int(TIMEOUT * 1000)}")
            return await fn(db, *args)
    except asyncpg.QueryCanceledError:
        raise SearchTooBroad(TOO_BROAD) from None


async def first_id_at(db, table: str, column: str, at: float) -> int:
    """An id from which on the rows of ``table`` are those whose ``column`` is at least
    ``at`` (one past the last id when no row is that late; the rows may start after it where
    ids are missing), found by bisection in about log2(rows) lookups of the primary key.
    ``column`` must grow with the id, as the times of inserted rows do."""
    low, high = await db.fetchrow(f"SELECT MIN(id), MAX(id) FROM {table}")
    if low is None:
        return 0
    high += 1
    while low < high:
        middle = (low + high) // 2
        row_id, value = await db.fetchrow(f"SELECT id, {column} FROM {table} WHERE id >= $1 "
                                          "ORDER BY id LIMIT 1", middle)
        if value >= at:
            high = middle
        else:
            low = row_id + 1
    return low


async def find_messages(db, query: MessageQuery) -> list[MessageRow]:
    """Messages matching ``query``, newest first, at most ``query.limit``. The id range is
    read newest first, BUDGET messages at most, and one more as a marker that passes every
    filter: when the marker comes back before the page is full, the range holds more than
    the budget and the search is too broad."""
    ranges, filters, values = [], [], []

    def value(v) -> str:
        values.append(v)
        return f"${len(values)}"
    if query.message_id is not None:
        ranges.append(f"id = {value(query.message_id)}")
    if query.since is not None:
        since = await first_id_at(db, "messages", "created_at", query.since - SLACK)
        ranges.append(f"id >= {value(since)}")
        filters.append(f"created_at >= {value(query.since)}")
    if query.until is not None:
        until = await first_id_at(db, "messages", "created_at", query.until + SLACK)
        ranges.append(f"id < {value(until)}")
        filters.append(f"created_at < {value(query.until)}")
    if query.before_id is not None:
        ranges.append(f"id < {value(query.before_id)}")
    for column, wanted in (("app", query.app), ("status", query.status)):
        if wanted is not None:
            filters.append(f"{column} = {value(wanted)}")
    if query.recipients:
        filters.append(f"recipient = ANY({value(list(query.recipients))}::text[])")
    where = f"WHERE {' AND '.join(ranges)}" if ranges else ""
    hit = " AND ".join(filters) or "true"
    budget, limit = value(BUDGET), value(query.limit)
    rows = await db.fetch(
        "SELECT id, app, channel, recipient, status, status_stat, kind, template_id, "
        f"created_at, parts, n > {budget} FROM (SELECT *, row_number() OVER (ORDER BY id DESC) "
        f"AS n FROM messages {where} ORDER BY id DESC LIMIT {budget} + 1) m "
        f"WHERE ({hit}) AND n <= {budget} OR n > {budget} ORDER BY id DESC LIMIT {limit}",
        *values)
    if rows and rows[-1][10]:
        raise SearchTooBroad(TOO_BROAD)
    return [MessageRow(*tuple(row)[:10]) for row in rows]


async def message_receipts(db, view: MessageView) -> list[ReceiptRow]:
    """The status reports received for the message's segments: read from the first receipt
    after the message was accepted to the last one that settled a segment (to the end while
    a segment waits)."""
    msg_ids = sorted({to_signed(s.msg_id) for s in view.segments if s.msg_id is not None})
    if not msg_ids:
        return []
    low = await first_id_at(db, "receipts", "received_at", view.created_at - SLACK)
    done = [s.done_at for s in view.segments]
    high = await first_id_at(db, "receipts", "received_at", max(done) + SLACK) \
        if None not in done else (1 << 62)
    rows = await db.fetch(
        "SELECT part, msg_id, stat, status, temporary, provider, connection, submit_time, "
        "done_time, received_at FROM receipts WHERE id >= $1 AND id < $2 AND channel = $3 "
        "AND msg_id = ANY($4::bigint[]) ORDER BY id LIMIT 100",
        low, high, view.channel, msg_ids)
    return [ReceiptRow(part, to_unsigned(msg_id), stat, status, bool(temporary), *rest)
            for part, msg_id, stat, status, temporary, *rest in rows]


async def message_callbacks(db, view: MessageView) -> list[CallbackRow]:
    """The status callbacks queued for the message, which happens when it turns final."""
    if view.status_at is None:
        return []
    low = await first_id_at(db, "outbox", "created_at", view.status_at - SLACK)
    high = await first_id_at(db, "outbox", "created_at", view.status_at + SLACK)
    rows = await db.fetch(
        "SELECT id, app, kind, attempts, state, last_error, created_at, next_attempt_at, "
        "done_at FROM outbox WHERE id >= $1 AND id < $2 AND kind = 'status' AND ref = $3 "
        "ORDER BY id", low, high, view.id)
    return [CallbackRow(*row) for row in rows]


async def pending_callbacks(db) -> list[PendingCallbacks]:
    """Per app, the callbacks still waiting (read through the index of pending ones)."""
    rows = await db.fetch(
        "SELECT app, COUNT(*), COUNT(*) FILTER (WHERE attempts > 0), MIN(created_at) "
        "FROM outbox WHERE state = 'pending' GROUP BY app ORDER BY app")
    return [PendingCallbacks(*row) for row in rows]
