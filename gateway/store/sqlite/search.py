"""The console's searches: messages by id, app, number, time and status; a message's status
reports and callbacks; the callbacks still waiting.

These run on a read-only connection of their own (``SqliteStore.read``), never in the writer
thread, so a long search does not hold up a write. The store keeps no index for them on
purpose (every index costs the hot path): ids grow with time in the messages, receipts and
outbox tables, so a time becomes an id range by bisection (``first_id_at``), and the rest is
read within that range. A search that would still read too much stops with SearchTooBroad.
"""

from __future__ import annotations

import sqlite3

from ..console import (
    CallbackRow,
    MessageQuery,
    MessageRow,
    PendingCallbacks,
    ReceiptRow,
    SearchTooBroad,
)
from ..records import MessageView, to_signed, to_unsigned

STEP = 1000                    # SQLite VM instructions between two budget checks
BUDGET = 50_000                # checks one search may take: about 50 M instructions
SLACK = 60.0                   # seconds: times written in one batch may be out of id order


def bounded(db: sqlite3.Connection, fn, *args):
    """``fn(db, *args)`` within the budget; SearchTooBroad when it runs out."""
    left = [BUDGET]

    def tick() -> int:
        left[0] -= 1
        return left[0] < 0
    db.set_progress_handler(tick, STEP)
    try:
        return fn(db, *args)
    except sqlite3.OperationalError as error:
        if left[0] < 0:
            raise SearchTooBroad("this search reads too much of the store; give a time "
                                 "range, an app or a status") from None
        raise error
    finally:
        db.set_progress_handler(None, STEP)


def first_id_at(db: sqlite3.Connection, table: str, column: str, at: float) -> int:
    """An id from which on the rows of ``table`` are those whose ``column`` is at least
    ``at`` (one past the last id when no row is that late; the rows may start after it where
    ids are missing), found by bisection in about log2(rows) lookups. ``column`` must grow
    with the id, as the times of inserted rows do."""
    low, high = db.execute(f"SELECT MIN(id), MAX(id) FROM {table}").fetchone()
    if low is None:
        return 0
    high += 1
    while low < high:
        middle = (low + high) // 2
        row_id, value = db.execute(f"SELECT id, {column} FROM {table} WHERE id >= ? "
                                   "ORDER BY id LIMIT 1", (middle,)).fetchone()
        if value >= at:
            high = middle
        else:
            low = row_id + 1
    return low


def find_messages(db: sqlite3.Connection, query: MessageQuery) -> list[MessageRow]:
    """Messages matching ``query``, newest first, at most ``query.limit``."""
    clauses, values = [], []
    if query.message_id is not None:
        clauses.append("id = ?")
        values.append(query.message_id)
    if query.since is not None:
        clauses.append("id >= ?")
        values.append(first_id_at(db, "messages", "created_at", query.since - SLACK))
        clauses.append("created_at >= ?")
        values.append(query.since)
    if query.until is not None:
        clauses.append("id < ?")
        values.append(first_id_at(db, "messages", "created_at", query.until + SLACK))
        clauses.append("created_at < ?")
        values.append(query.until)
    if query.before_id is not None:
        clauses.append("id < ?")
        values.append(query.before_id)
    for column, value in (("app", query.app), ("status", query.status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    if query.recipients:
        clauses.append(f"recipient IN ({', '.join('?' * len(query.recipients))})")
        values.extend(query.recipients)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.execute(
        "SELECT id, app, channel, recipient, status, status_stat, kind, template_id, created_at, "
        f"parts FROM messages {where} ORDER BY id DESC LIMIT ?", (*values, query.limit))
    return [MessageRow(*row) for row in rows]


def message_receipts(db: sqlite3.Connection, view: MessageView) -> list[ReceiptRow]:
    """The status reports received for the message's segments: read from the first receipt
    after the message was accepted to the last one that settled a segment (to the end while
    a segment waits)."""
    msg_ids = sorted({to_signed(s.msg_id) for s in view.segments if s.msg_id is not None})
    if not msg_ids:
        return []
    low = first_id_at(db, "receipts", "received_at", view.created_at - SLACK)
    done = [s.done_at for s in view.segments]
    high = first_id_at(db, "receipts", "received_at", max(done) + SLACK) \
        if None not in done else (1 << 62)
    rows = db.execute(
        "SELECT part, msg_id, stat, status, temporary, provider, connection, submit_time, "
        "done_time, received_at FROM receipts WHERE id >= ? AND id < ? AND channel = ? "
        f"AND msg_id IN ({', '.join('?' * len(msg_ids))}) ORDER BY id LIMIT 100",
        (low, high, view.channel, *msg_ids))
    return [ReceiptRow(part, to_unsigned(msg_id), stat, status, bool(temporary), *rest)
            for part, msg_id, stat, status, temporary, *rest in rows]


def message_callbacks(db: sqlite3.Connection, view: MessageView) -> list[CallbackRow]:
    """The status callbacks queued for the message, which happens when it turns final."""
    if view.status_at is None:
        return []
    low = first_id_at(db, "outbox", "created_at", view.status_at - SLACK)
    high = first_id_at(db, "outbox", "created_at", view.status_at + SLACK)
    rows = db.execute(
        "SELECT id, app, kind, attempts, state, last_error, created_at, next_attempt_at, "
        "done_at FROM outbox WHERE id >= ? AND id < ? AND kind = 'status' AND ref = ? "
        "ORDER BY id", (low, high, view.id))
    return [CallbackRow(*row) for row in rows]


def pending_callbacks(db: sqlite3.Connection) -> list[PendingCallbacks]:
    """Per app, the callbacks still waiting (read through the index of pending ones)."""
    rows = db.execute(
        "SELECT app, COUNT(*), SUM(attempts > 0), MIN(created_at) FROM outbox "
        "INDEXED BY outbox_due WHERE state = 'pending' AND next_attempt_at >= 0 "
        "GROUP BY app ORDER BY app")
    return [PendingCallbacks(*row) for row in rows]
